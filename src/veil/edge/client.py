"""The edge side of veil: obfuscate on the device, send only the 8-bit obfuscated image.

    from veil.edge.client import VeilClient
    with VeilClient("http://127.0.0.1:8000", "obfuscator.onnx") as client:
        for p in client.classify(["cat.jpg", "dog.png"]):
            print(p.source, p.label, p.confidence)

Each image (any size or format Pillow reads) has its shorter side resized to the size the
obfuscator was exported for (32 for CIFAR-10) and is centre-cropped to a square, runs through
the ONNX obfuscator with onnxruntime, is rounded to 8 bits per channel and PNG-encoded; those
PNG bytes, under a neutral file name, are all that leaves the device. With `protocol="v2"` the
same 8-bit image goes to a server of the Open Inference Protocol (`veil serve`, Triton, KServe)
as the model's input tensor instead (edge/v2.py). This module needs numpy,
pillow, onnxruntime and httpx (`pip install veil[edge]`) and never imports torch, unless a
PyTorch checkpoint is given as the obfuscator.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ..core.text import printable
from ..core.wire import CLASSIFY, FIELD, HEADER_LENGTH, HEALTH, v2_model_path
from .images import IMAGE_SIZE, ImageInput, encode_png, load_image
from .obfuscators import load_obfuscator
from .v2 import BadModel, ModelInput, infer_request, model_input
from .v2 import predictions as v2_predictions

Obfuscate = Callable[[np.ndarray], np.ndarray]

# What a server may cost this client. An answer is a few hundred bytes an image; the caps leave
# room for any honest server and stop a broken or hostile one (an endless body, a trickle).
MAX_RESPONSE_BYTES = 4 * 2**20
REQUEST_TIMEOUT = 120.0  # seconds for a whole request, first byte sent to last byte read
MAX_RATE_LIMITED = 8  # 429 answers honoured in a row before giving up
MAX_RETRY_AFTER = 60.0  # the longest Retry-After wait taken
PROBABILITY_SLACK = 1e-3  # rounding a server may apply to probabilities and their sum


class ServerError(RuntimeError):
    """The server answered with an error, or with something that is not a valid answer
    (status, machine-readable code, message; the message names the server)."""

    def __init__(self, status: int, code: str, detail: str, server: str = "the server") -> None:
        # the server's words, escaped: they reach a terminal (ANSI/OSC sequences, fake lines)
        code, detail = printable(code), printable(detail)
        answered = f"answered {status}" if status else "gave no answer"
        super().__init__(f"{server} {answered} ({code}): {detail}")
        self.status, self.code, self.detail, self.server = status, code, detail, server


class NotClassified(ServerError):
    """A request failed part-way through `classify` (the server died, went away or answered
    wrongly). `predictions` holds the images answered before it, in order; `unanswered` names
    the rest, the request in flight first. Classifying has no side effects, so the unanswered
    images may simply be sent again. status/code/detail are the cause's (status 0, code
    "no_answer" when the server could not be reached)."""

    def __init__(self, cause: ServerError | ConnectionError, predictions: list[Prediction],
                 unanswered: list[str]) -> None:
        if isinstance(cause, ServerError):
            status, code, detail, server = cause.status, cause.code, cause.detail, cause.server
        else:
            status, code, detail, server = 0, "no_answer", str(cause), "the server"
        shown = ", ".join(unanswered[:5]) + (", ..." if len(unanswered) > 5 else "")
        RuntimeError.__init__(self, f"{cause}; not classified: {len(unanswered)} image(s) "
                                    f"({shown}), {len(predictions)} answered before")
        self.status, self.code, self.detail, self.server = status, code, detail, server
        self.cause, self.predictions, self.unanswered = cause, predictions, unanswered


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole within the client's limits."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class Prediction:
    source: str
    label: str
    class_index: int
    confidence: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    sent_bytes: int = 0


class VeilClient:
    """Obfuscates locally and classifies on a veil server (`veil serve`).

    The server is not trusted: every answer is read within `max_response_bytes` and
    `request_timeout` seconds (a read waits at most `timeout`), and a prediction that is not
    one well-formed answer per image (finite probabilities in [0, 1], labels of the server's
    own class list, each once) is a ServerError naming the server and the image. With
    `bad_answers="skip"` such a prediction becomes None instead and is counted in `skipped`.
    A 429 answer is honoured: the client waits its Retry-After (at most MAX_RETRY_AFTER s) and
    sends again, counting the waits in `rate_limited`.
    """

    def __init__(self, server: str, obfuscator: str | os.PathLike | Obfuscate,
                 token: str | None = None, *, timeout: float = 30.0, batch_size: int = 32,
                 top_k: int = 1, threads: int = 1, transport: Any = None,
                 request_timeout: float = REQUEST_TIMEOUT,
                 max_response_bytes: int = MAX_RESPONSE_BYTES,
                 bad_answers: str = "error", protocol: str = "v1",
                 model: str | None = None, class_names: Sequence[str] | None = None) -> None:
        import httpx

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        if not (timeout > 0 and request_timeout > 0 and max_response_bytes > 0):
            raise ValueError("timeout, request_timeout and max_response_bytes must be positive")
        if bad_answers not in ("error", "skip"):
            raise ValueError(f"bad_answers must be 'error' or 'skip', got {bad_answers!r}")
        if protocol not in ("v1", "v2"):
            raise ValueError(f"protocol must be 'v1' (veil's /v1/classify) or 'v2' (the Open "
                             f"Inference Protocol), got {protocol!r}")
        if protocol == "v2" and not model:
            raise ValueError("the Open Inference Protocol addresses a model by name: give the "
                             "served model's name (--model)")
        self.protocol, self.model = protocol, model
        self.v2_input: ModelInput | None = None  # from the model's metadata, once checked
        self.v2_labels: dict[int, str] = {}  # class index -> the label the model gave it
        self.obfuscator = (obfuscator if callable(obfuscator)
                           else load_obfuscator(obfuscator, threads))
        # names of the classes, for a v2 model that answers plain score tensors: given, or the
        # obfuscator's manifest (the classes of the classifier it was trained for)
        manifest = getattr(self.obfuscator, "manifest", None) or {}
        names = class_names if class_names is not None else manifest.get("classes")
        self.class_names = [str(c) for c in names] if names else None
        self.batch_size, self.top_k = batch_size, top_k
        self.request_timeout, self.max_response_bytes = request_timeout, max_response_bytes
        self.bad_answers = bad_answers
        self.server = server.rstrip("/")
        headers = {"Accept-Encoding": "identity"}  # the size cap counts the bytes as sent
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.server, headers=headers,
                                 timeout=min(timeout, request_timeout), transport=transport)
        self.classes: list[str] | None = None  # the server's, once /healthz has answered
        self.skipped: list[tuple[str, str]] = []  # (image, what was wrong) with "skip"
        self.rate_limited = 0
        self._server_checked = False

    def __enter__(self) -> VeilClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def obfuscate(self, inputs: Iterable[ImageInput]) -> list[bytes]:
        """The PNG bytes of each input's 8-bit obfuscated image (what /v1 sends)."""
        return [encode_png(im) for im in self.obfuscated(inputs)]

    def obfuscated(self, inputs: Iterable[ImageInput]) -> np.ndarray:
        """The 8-bit obfuscated images, uint8 (N, H, W, 3)."""
        size = getattr(self.obfuscator, "image_size", IMAGE_SIZE)
        images = np.stack([load_image(x, size) for x in inputs])
        return np.concatenate([self.obfuscator(images[start:start + self.batch_size])
                               for start in range(0, len(images), self.batch_size)])

    def classify(self, inputs: Sequence[ImageInput] | ImageInput,
                 save_obfuscated: str | os.PathLike | None = None) -> list[Prediction]:
        """Obfuscate, send, and return one Prediction per input (in order; with
        bad_answers="skip", None where the server's answer was not valid)."""
        if isinstance(inputs, (str, os.PathLike, bytes)) or (
                isinstance(inputs, np.ndarray) and inputs.ndim == 3):
            inputs = [inputs]
        names = [_source_name(x, i) for i, x in enumerate(inputs)]
        images = self.obfuscated(inputs)
        pngs = [encode_png(im) for im in images] if (
            self.protocol == "v1" or save_obfuscated is not None) else None
        if save_obfuscated is not None:
            save_payloads(pngs, names, Path(save_obfuscated))
        # what is sent of each image: its PNG (v1), or its 8-bit pixels as a tensor (v2)
        payloads = pngs if self.protocol == "v1" else [im.tobytes() for im in images]
        self.check_server()
        predictions: list[Prediction] = []
        start = 0
        while start < len(payloads):  # the batch size may shrink on the way (a 413)
            chunk = payloads[start:start + self.batch_size]
            try:
                predictions += self.send(chunk, names[start:start + len(chunk)])
            except (ServerError, ConnectionError) as e:
                raise NotClassified(e, predictions, names[start:]) from e
            start += len(chunk)
        return predictions

    def send(self, payloads: list[bytes], names: list[str]) -> list[Prediction]:
        """One request of already-encoded images (PNGs for v1, 8-bit pixels for v2; at most
        the server's limit) -> predictions. A v2 server (whose metadata need not say its
        batch limit) that answers 413 gets the images again in two halves, and the client
        keeps the smaller batch size."""
        try:
            results = self._post(payloads) if self.protocol == "v1" else self._infer(payloads)
        except ServerError as e:
            if self.protocol == "v1" or e.status != 413 or len(payloads) < 2:
                raise
            half = len(payloads) // 2
            self.batch_size = min(self.batch_size, half)
            return (self.send(payloads[:half], names[:half])
                    + self.send(payloads[half:], names[half:]))
        if len(results) != len(names):
            missing = names[len(results):] or names
            raise self._bad(f"sent {len(names)} image(s) but got {len(results)} "
                            f"prediction(s); affected: {', '.join(missing[:10])}")
        predictions = []
        for i, (result, name) in enumerate(zip(results, names, strict=True)):
            problem = prediction_problem(result, i, self.classes, self.top_k)
            if problem is None:
                predictions.append(_prediction(name, result, len(payloads[i])))
            elif self.bad_answers == "skip":
                self.skipped.append((name, problem))
                predictions.append(None)
            else:
                raise self._bad(f"malformed or out-of-order prediction for {name} "
                                f"(position {i}): {problem}")
        return predictions

    def health(self) -> dict[str, Any]:
        return self._json(self._request("GET", HEALTH))

    def _post(self, payloads: list[bytes]) -> list[Any]:
        files = [(FIELD, (f"image-{i}.png", data, "image/png"))
                 for i, data in enumerate(payloads)]
        answer = self._request("POST", CLASSIFY, files=files, params={"top_k": self.top_k})
        predictions = self._json(answer).get("predictions")
        if not isinstance(predictions, list):
            raise self._bad("the answer holds no list of predictions", answer.status)
        return predictions

    def _infer(self, payloads: list[bytes]) -> list[Any]:
        """One Open Inference Protocol request: the images as the model's input tensor, the
        top k asked in the classification extension."""
        spec = self._v2_input()
        h, w = spec.size
        images = np.frombuffer(b"".join(payloads), np.uint8).reshape(len(payloads), h, w, 3)
        body, header_length = infer_request(spec, images, self.top_k)
        answer = self._request("POST", f"{v2_model_path(quote(spec.model, safe=''))}/infer",
                               content=body, headers={HEADER_LENGTH: header_length,
                                                      "content-type": "application/octet-stream"})
        try:
            return v2_predictions(self._json(answer), spec, len(payloads), self.top_k,
                                  self.v2_labels, self.class_names)
        except BadModel as e:
            raise self._bad(str(e), answer.status) from None

    def _v2_input(self) -> ModelInput:
        if self.v2_input is None:
            self.check_server()
        assert self.v2_input is not None
        return self.v2_input

    def _request(self, method: str, path: str, **kwargs: Any) -> Answer:
        """Send, honouring 429 Retry-After up to MAX_RATE_LIMITED times in a row."""
        for _ in range(MAX_RATE_LIMITED):
            answer = self._request_once(method, path, **kwargs)
            if answer.status != 429:
                return answer
            self.rate_limited += 1
            time.sleep(retry_after_seconds(answer.headers.get("retry-after")))
        raise ServerError(429, "rate_limited", f"still rate-limited after {MAX_RATE_LIMITED} "
                          "waits; try again later or with a smaller query rate", self.server)

    def _request_once(self, method: str, path: str, **kwargs: Any) -> Answer:
        """One request, bounded in time even against a server that trickles its headers:
        the reading runs in a daemon thread that is abandoned (and stops at its next read)
        once request_timeout has passed."""
        deadline = time.monotonic() + self.request_timeout
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def read() -> None:
            try:
                outcome["answer"] = self._read(method, path, deadline, **kwargs)
            except Exception as e:  # handed to the caller's thread below
                outcome["error"] = e
            finally:
                done.set()

        threading.Thread(target=read, name="veil-request", daemon=True).start()
        if not done.wait(self.request_timeout):
            raise self._too_slow()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["answer"]

    def _read(self, method: str, path: str, deadline: float, **kwargs: Any) -> Answer:
        import httpx

        try:
            with self.http.stream(method, path, **kwargs) as response:
                self._check_encoding(response)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise self._too_big(response.status_code)
                body = bytearray()
                for piece in _raw_pieces(response):
                    body += piece
                    if len(body) > self.max_response_bytes:
                        raise self._too_big(response.status_code)
                    if time.monotonic() > deadline:
                        raise self._too_slow()
                return Answer(response.status_code, bytes(body), dict(response.headers))
        except httpx.TimeoutException:
            raise self._too_slow() from None
        except (httpx.RemoteProtocolError, httpx.DecodingError) as e:
            raise self._bad(f"not a valid HTTP answer ({str(e)[:120]})") from None
        except httpx.HTTPError as e:
            raise ConnectionError(f"cannot reach the veil server at {self.server}: "
                                  f"{str(e) or type(e).__name__}") from None

    def _check_encoding(self, response: Any) -> None:
        """Refuses, before a byte of the body is read, an answer in any Content-Encoding but
        identity: httpx would inflate it (a 2 KB gzip bomb is a gigabyte) before the size cap
        could count it. The client asks for identity only."""
        encoding = response.headers.get("content-encoding", "identity")
        layers = [e.strip().lower() for e in encoding.split(",")]
        if any(e not in ("identity", "") for e in layers):
            raise self._bad(f"the answer is compressed (Content-Encoding "
                            f"'{encoding[:40]}'), which this client refuses unread; it asks "
                            "for identity", response.status_code)  # ServerError escapes it

    def _too_big(self, status: int) -> ServerError:
        return self._bad(f"the answer is larger than the client's cap of "
                         f"{self.max_response_bytes:,} bytes; stopped reading", status)

    def _too_slow(self) -> ServerError:
        return ServerError(0, "timeout", f"no complete answer within {self.request_timeout:g} s "
                           "(request_timeout); stopped waiting", self.server)

    def _bad(self, detail: str, status: int = 200) -> ServerError:
        return ServerError(status, "bad_response", detail, self.server)

    def _json(self, answer: Answer) -> dict[str, Any]:
        """The answer's JSON object (the header part of a v2 answer with binary data), or the
        server's error, in veil's shape ({"error": code, "detail": text}) or the Open
        Inference Protocol's ({"error": text})."""
        head = answer.body
        length = answer.headers.get(HEADER_LENGTH, "")
        if length.isdigit() and int(length) <= len(head):
            head = head[:int(length)]
        try:
            body = json.loads(head)
        except (ValueError, RecursionError):
            body = None
        if answer.status >= 400:
            body = body if isinstance(body, dict) else {}
            text = answer.body[:200].decode("utf-8", "replace")
            if "detail" in body or self.protocol == "v1":
                code, detail = body.get("error", "http_error"), body.get("detail", text)
            else:
                code, detail = body.get("code", "http_error"), body.get("error", text)
            raise ServerError(answer.status, str(code)[:80], str(detail)[:300], self.server)
        if not isinstance(body, dict):
            raise self._bad("the answer is not a JSON object (is the URL a veil server?)",
                            answer.status)
        return body

    def check_server(self) -> None:
        """Once per client: adopt the server's images-per-request limit and class list,
        compare classifiers."""
        if self._server_checked:
            return
        self._server_checked = True
        if self.protocol == "v2":
            self._check_v2_model()
            return
        try:
            health = self.health()
        except ServerError as e:
            if e.code in ("bad_response", "timeout"):
                raise
            return  # a proxy may hide /healthz; the defaults still work
        limit = health.get("max_images", self.batch_size)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise self._bad(f"/healthz gives max_images {limit!r:.40}, not a whole number "
                            "of at least 1")
        self.batch_size = min(self.batch_size, limit)
        if health.get("classes") is not None:
            self.classes = checked_classes(health["classes"], self.server)
        size = getattr(self.obfuscator, "image_size", IMAGE_SIZE)
        if health.get("image_size") not in (None, [size, size]):
            raise ServerError(200, "image_size_mismatch",
                              f"the server classifies {str(health['image_size'])[:40]} images, "
                              f"the obfuscator makes {size}x{size} ones", self.server)
        expected = (getattr(self.obfuscator, "manifest", None) or {}).get("classifier", {})
        served = health.get("classifier", {})
        served = served if isinstance(served, dict) else {}
        if expected.get("sha256") and served.get("sha256") not in (None, expected["sha256"]):
            warnings.warn(f"the obfuscator was trained for classifier {expected['sha256'][:12]}..."
                          f" but the server runs {str(served['sha256'])[:12]}...; accuracy may "
                          "suffer", stacklevel=3)


    def _check_v2_model(self) -> None:
        """The served model's metadata: its input tensor, its size, its batch limit."""
        assert self.model is not None
        answer = self._request("GET", v2_model_path(quote(self.model, safe="")))
        try:
            spec = model_input(self._json(answer), self.model)
        except BadModel as e:
            raise self._bad(str(e), answer.status) from None
        size = getattr(self.obfuscator, "image_size", IMAGE_SIZE)
        if spec.size != (size, size):
            raise ServerError(200, "image_size_mismatch",
                              f"model {self.model!r} takes {spec.size[1]}x{spec.size[0]} images, "
                              f"the obfuscator makes {size}x{size} ones", self.server)
        if spec.max_batch is not None:
            self.batch_size = min(self.batch_size, spec.max_batch)
        self.v2_input = spec


def _raw_pieces(response: Any) -> Iterable[bytes]:
    """The body as sent (never inflated: only identity gets this far). An in-memory answer
    (a test transport) is already read whole, so httpx only iterates its bytes."""
    return response.iter_bytes() if response.is_stream_consumed else response.iter_raw()


def retry_after_seconds(value: str | None) -> float:
    """A 429's Retry-After in seconds (a number; an HTTP date or nothing: 1 s), capped."""
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER) if math.isfinite(seconds) else 1.0


def checked_classes(classes: Any, server: str = "the server") -> list[str]:
    """The class list a server announces: distinct, non-empty strings."""
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) and c for c in classes)):
        raise ServerError(200, "bad_response", f"/healthz gives classes {str(classes)[:60]}, "
                          "not a list of names", server)
    if len(set(classes)) != len(classes):
        twice = sorted({c for c in classes if classes.count(c) > 1})
        raise ServerError(200, "bad_response", f"/healthz lists class {twice[0][:40]!r} more "
                          "than once", server)
    return list(classes)


def _source_name(source: ImageInput, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"image-{index}"


def _probability(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and -PROBABILITY_SLACK <= value <= 1 + PROBABILITY_SLACK)


def prediction_problem(result: Any, position: int, classes: list[str] | None,
                       top_k: int) -> str | None:
    """What is wrong with one prediction of a server's answer, or None if it is valid."""
    if not isinstance(result, dict):
        return "not an object"
    label, index, top = result.get("label"), result.get("class_index"), result.get("top_k")
    if result.get("index", position) != position:
        return f"answers position {str(result.get('index'))[:20]}"
    if not isinstance(label, str) or isinstance(index, bool) or not isinstance(index, int):
        return "no label and class_index"
    if not _probability(result.get("confidence")):
        return f"confidence {str(result.get('confidence'))[:20]} is not a probability"
    if not isinstance(top, list) or len(top) > max(top_k, 1) or not all(
            isinstance(t, dict) and isinstance(t.get("label"), str) for t in top):
        return "top_k is not a list of at most the labels asked for"
    for t in top:
        if not _probability(t.get("probability")):
            return (f"probability {str(t.get('probability'))[:20]} of "
                    f"{t['label'][:40]!r} is not a number in [0, 1]")
    labels = [t["label"] for t in top]
    if len(set(labels)) != len(labels):
        return "a label appears twice in top_k"
    if sum(t["probability"] for t in top) > 1 + PROBABILITY_SLACK:
        return "top_k probabilities add up to more than 1"
    if classes is not None:
        unknown = [x for x in [label, *labels] if x not in classes]
        if unknown:
            return f"label {unknown[0][:40]!r} is not one of the server's classes"
        if not 0 <= index < len(classes) or classes[index] != label:
            return f"class_index {index} does not name {label[:40]!r}"
    return None


def _prediction(source: str, result: dict[str, Any], sent: int) -> Prediction:
    return Prediction(source, result["label"], int(result["class_index"]),
                      float(result["confidence"]),
                      [(t["label"], float(t["probability"])) for t in result["top_k"]], sent)


def save_payloads(payloads: list[bytes], names: list[str], folder: Path) -> list[Path]:
    """Write each sent PNG, byte for byte, as folder/<input stem>.png (made unique)."""
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    paths = []
    for data, name in zip(payloads, names, strict=True):
        stem = Path(name).stem or "image"
        candidate, k = stem, 1
        while candidate in used:
            candidate, k = f"{stem}-{k}", k + 1
        used.add(candidate)
        path = folder / f"{candidate}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths
