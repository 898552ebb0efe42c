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
as the model's input tensor instead. This module needs numpy, pillow, onnxruntime and httpx
(`pip install veil[edge]`) and never imports torch, unless a PyTorch checkpoint is given as the
obfuscator.

The client is the device's side of the work (load, obfuscate, batch, check, save); what it
sends goes through a `Transport` (transport.py: caps, deadlines, retries) and one adapter per
protocol (v1.py: PNGs to /v1/classify; v2.py: tensors to the Open Inference Protocol); every
per-image answer is checked against the wire contract (core/answers.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..core.answers import prediction_problem
from ..core.wire import HEALTH
from .answers import NotClassified, Prediction, ServerError, to_prediction
from .images import IMAGE_SIZE, ImageInput, encode_png, load_image
from .obfuscators import load_obfuscator
from .transport import MAX_RESPONSE_BYTES, REQUEST_TIMEOUT, Transport
from .v1 import V1
from .v2 import V2

__all__ = ["MAX_RESPONSE_BYTES", "REQUEST_TIMEOUT", "NotClassified", "Prediction",
           "ServerError", "VeilClient", "save_payloads"]

Obfuscate = Callable[[np.ndarray], np.ndarray]


class Adapter(Protocol):
    """One protocol's side of the conversation (v1.V1, v2.V2)."""

    errors: str  # the error shape its server answers in ("v1" or "v2")
    sends_png: bool  # whether the payloads are PNG files (else 8-bit pixels)
    splits_on_413: bool  # whether a 413 means "send fewer images" (the limit was not given)
    classes: list[str] | None  # the server's class list, where it announces one

    def payloads(self, images: np.ndarray) -> list[bytes]: ...

    def handshake(self, transport: Transport, image_size: int,
                  manifest: dict[str, Any]) -> int | None: ...

    def request(self, transport: Transport, payloads: list[bytes],
                top_k: int) -> list[Any]: ...


class VeilClient:
    """Obfuscates locally and classifies on a veil server (`veil serve`), or on any server of
    the Open Inference Protocol with `protocol="v2"` and the served `model`'s name.

    The server is not trusted: every answer is read within `max_response_bytes` and
    `request_timeout` seconds (a read waits at most `timeout`), and a prediction that is not
    one well-formed answer per image (finite probabilities in [0, 1], labels of the server's
    own class list, each once) is a ServerError naming the server and the image. With
    `bad_answers="skip"` such a prediction becomes None instead and is counted in `skipped`.
    A 429 answer is honoured: the client waits its Retry-After (at most 60 s) and sends
    again, counting the waits in `rate_limited`.
    """

    def __init__(self, server: str, obfuscator: str | os.PathLike | Obfuscate,
                 token: str | None = None, *, timeout: float = 30.0, batch_size: int = 32,
                 top_k: int = 1, threads: int = 1, transport: Any = None,
                 request_timeout: float = REQUEST_TIMEOUT,
                 max_response_bytes: int = MAX_RESPONSE_BYTES,
                 bad_answers: str = "error", protocol: str = "v1",
                 model: str | None = None, class_names: Sequence[str] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        if bad_answers not in ("error", "skip"):
            raise ValueError(f"bad_answers must be 'error' or 'skip', got {bad_answers!r}")
        if protocol not in ("v1", "v2"):
            raise ValueError(f"protocol must be 'v1' (veil's /v1/classify) or 'v2' (the Open "
                             f"Inference Protocol), got {protocol!r}")
        if protocol == "v2" and not model:
            raise ValueError("the Open Inference Protocol addresses a model by name: give the "
                             "served model's name (--model)")
        self.protocol, self.model = protocol, model
        self.transport = Transport(server, token, timeout=timeout,
                                   request_timeout=request_timeout,
                                   max_response_bytes=max_response_bytes, transport=transport,
                                   errors=protocol)
        self.obfuscator = (obfuscator if callable(obfuscator)
                           else load_obfuscator(obfuscator, threads))
        self.manifest: dict[str, Any] = getattr(self.obfuscator, "manifest", None) or {}
        # names of the classes, for a v2 model that answers plain score tensors: given, or the
        # obfuscator's manifest (the classes of the classifier it was trained for)
        names = class_names if class_names is not None else self.manifest.get("classes")
        self.class_names = [str(c) for c in names] if names else None
        self.adapter: Adapter = V1() if protocol == "v1" else V2(model, self.class_names)
        self.batch_size, self.top_k, self.bad_answers = batch_size, top_k, bad_answers
        self.skipped: list[tuple[str, str]] = []  # (image, what was wrong) with "skip"
        self._server_checked = False

    @property
    def server(self) -> str:
        return self.transport.server

    @property
    def classes(self) -> list[str] | None:
        """The server's class list, once it has announced one (v1's /healthz)."""
        return self.adapter.classes

    @property
    def rate_limited(self) -> int:
        return self.transport.rate_limited

    @property
    def image_size(self) -> int:
        return getattr(self.obfuscator, "image_size", IMAGE_SIZE)

    def __enter__(self) -> VeilClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def obfuscate(self, inputs: Iterable[ImageInput]) -> list[bytes]:
        """The PNG bytes of each input's 8-bit obfuscated image (what /v1 sends)."""
        return [encode_png(im) for im in self.obfuscated(inputs)]

    def obfuscated(self, inputs: Iterable[ImageInput]) -> np.ndarray:
        """The 8-bit obfuscated images, uint8 (N, H, W, 3)."""
        images = np.stack([load_image(x, self.image_size) for x in inputs])
        return np.concatenate([self.obfuscator(images[start:start + self.batch_size])
                               for start in range(0, len(images), self.batch_size)])

    def classify(self, inputs: Sequence[ImageInput] | ImageInput,
                 save_obfuscated: str | os.PathLike | None = None
                 ) -> list[Prediction | None]:
        """Obfuscate, send, and return one Prediction per input, in order. None only with
        bad_answers="skip", where the server's answer for that image was not valid (the
        image and the reason are in `skipped`)."""
        if isinstance(inputs, (str, os.PathLike, bytes)) or (
                isinstance(inputs, np.ndarray) and inputs.ndim == 3):
            inputs = [inputs]
        names = [_source_name(x, i) for i, x in enumerate(inputs)]
        images = self.obfuscated(inputs)
        payloads = self.adapter.payloads(images)  # what is sent: PNGs (v1) or pixels (v2)
        if save_obfuscated is not None:
            pngs = payloads if self.adapter.sends_png else [encode_png(im) for im in images]
            save_payloads(pngs, names, Path(save_obfuscated))
        self.check_server()
        predictions: list[Prediction | None] = []
        start = 0
        while start < len(payloads):  # the batch size may shrink on the way (a 413)
            chunk = payloads[start:start + self.batch_size]
            try:
                predictions += self.send(chunk, names[start:start + len(chunk)])
            except (ServerError, ConnectionError) as e:
                raise NotClassified(e, predictions, names[start:]) from e
            start += len(chunk)
        return predictions

    def send(self, payloads: list[bytes], names: list[str]) -> list[Prediction | None]:
        """One request of already-encoded images (the adapter's payloads, at most the server's
        limit) -> predictions. A server that answers 413 without having said its limit gets
        the images again in two halves, and the client keeps the smaller batch size."""
        self.check_server()
        try:
            results = self.adapter.request(self.transport, payloads, self.top_k)
        except ServerError as e:
            if not self.adapter.splits_on_413 or e.status != 413 or len(payloads) < 2:
                raise
            half = len(payloads) // 2
            self.batch_size = min(self.batch_size, half)
            return (self.send(payloads[:half], names[:half])
                    + self.send(payloads[half:], names[half:]))
        if len(results) != len(names):
            missing = names[len(results):] or names
            raise self.transport.bad(f"sent {len(names)} image(s) but got {len(results)} "
                                     f"prediction(s); affected: {', '.join(missing[:10])}")
        return [self._checked(result, i, name, len(payloads[i]))
                for i, (result, name) in enumerate(zip(results, names, strict=True))]

    def _checked(self, result: Any, position: int, name: str, sent: int) -> Prediction | None:
        problem = prediction_problem(result, position, self.classes, self.top_k)
        if problem is None:
            return to_prediction(name, result, sent)
        if self.bad_answers == "skip":
            self.skipped.append((name, problem))
            return None
        raise self.transport.bad(f"malformed or out-of-order prediction for {name} "
                                 f"(position {position}): {problem}")

    def health(self) -> dict[str, Any]:
        return self.transport.json(self.transport.request("GET", HEALTH))

    def check_server(self) -> None:
        """Once per client, the protocol's handshake: the server's images-per-request limit,
        image size, class list and classifier."""
        if self._server_checked:
            return
        self._server_checked = True
        limit = self.adapter.handshake(self.transport, self.image_size, self.manifest)
        if limit is not None:
            self.batch_size = min(self.batch_size, limit)


def _source_name(source: ImageInput, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"image-{index}"


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
