"""The edge side of veil: obfuscate on the device, send only the 8-bit obfuscated image.

    from veil.edge.client import VeilClient
    with VeilClient("http://127.0.0.1:8000", "obfuscator.onnx") as client:
        for p in client.classify(["cat.jpg", "dog.png"]):
            print(p.source, p.label, p.confidence)

Each image (any size or format Pillow reads) has its shorter side resized to the size the
obfuscator was exported for (32 for CIFAR-10) and is centre-cropped to a square, runs through
the ONNX obfuscator with onnxruntime, is rounded to 8 bits per channel and PNG-encoded; those
PNG bytes, under a neutral file name, are all that leaves the device. This module needs numpy,
pillow, onnxruntime and httpx (`pip install veil[edge]`) and never imports torch, unless a
PyTorch checkpoint is given as the obfuscator.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .images import IMAGE_SIZE, ImageInput, encode_png, load_image
from .obfuscators import load_obfuscator

Obfuscate = Callable[[np.ndarray], np.ndarray]


class ServerError(RuntimeError):
    """The server answered with an error (status, machine-readable code, message)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"server answered {status} ({code}): {detail}")
        self.status, self.code, self.detail = status, code, detail


@dataclass
class Prediction:
    source: str
    label: str
    class_index: int
    confidence: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    sent_bytes: int = 0


class VeilClient:
    """Obfuscates locally and classifies on a veil server (`veil serve`)."""

    def __init__(self, server: str, obfuscator: str | os.PathLike | Obfuscate,
                 token: str | None = None, *, timeout: float = 30.0, batch_size: int = 32,
                 top_k: int = 1, threads: int = 1, transport: Any = None) -> None:
        import httpx

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.obfuscator = (obfuscator if callable(obfuscator)
                           else load_obfuscator(obfuscator, threads))
        self.batch_size, self.top_k = batch_size, top_k
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=server.rstrip("/"), headers=headers, timeout=timeout,
                                 transport=transport)
        self._server_checked = False

    def __enter__(self) -> VeilClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def obfuscate(self, inputs: Iterable[ImageInput]) -> list[bytes]:
        """The PNG bytes that would be sent for each input."""
        size = getattr(self.obfuscator, "image_size", IMAGE_SIZE)
        images = np.stack([load_image(x, size) for x in inputs])
        out: list[bytes] = []
        for start in range(0, len(images), self.batch_size):
            out += [encode_png(im) for im in self.obfuscator(images[start:start + self.batch_size])]
        return out

    def classify(self, inputs: Sequence[ImageInput] | ImageInput,
                 save_obfuscated: str | os.PathLike | None = None) -> list[Prediction]:
        """Obfuscate, send, and return one Prediction per input (in order)."""
        if isinstance(inputs, (str, os.PathLike, bytes)) or (
                isinstance(inputs, np.ndarray) and inputs.ndim == 3):
            inputs = [inputs]
        names = [_source_name(x, i) for i, x in enumerate(inputs)]
        payloads = self.obfuscate(inputs)
        if save_obfuscated is not None:
            save_payloads(payloads, names, Path(save_obfuscated))
        self._check_server_once()
        predictions: list[Prediction] = []
        for start in range(0, len(payloads), self.batch_size):
            chunk = payloads[start:start + self.batch_size]
            results = self._post(chunk)
            check_predictions(results, names[start:start + len(chunk)])
            predictions += [_prediction(names[start + i], r, len(chunk[i]))
                            for i, r in enumerate(results)]
        return predictions

    def health(self) -> dict[str, Any]:
        return self._json(self._request("GET", "/healthz"))

    def _post(self, payloads: list[bytes]) -> list[dict[str, Any]]:
        files = [("files", (f"image-{i}.png", data, "image/png"))
                 for i, data in enumerate(payloads)]
        response = self._request("POST", "/v1/classify", files=files,
                                 params={"top_k": self.top_k})
        predictions = self._json(response).get("predictions")
        if not isinstance(predictions, list):
            raise ServerError(response.status_code, "bad_response",
                              "the answer holds no list of predictions")
        return predictions

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ConnectionError(f"cannot reach the veil server at {self.http.base_url}: "
                                  f"{e}") from None

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            body = body if isinstance(body, dict) else {}
            raise ServerError(response.status_code, str(body.get("error", "http_error")),
                              str(body.get("detail", response.text[:200])))
        if not isinstance(body, dict):
            raise ServerError(response.status_code, "bad_response",
                              "the answer is not a JSON object (is the URL a veil server?)")
        return body

    def _check_server_once(self) -> None:
        """Once per client: adopt the server's images-per-request limit, compare classifiers."""
        if self._server_checked:
            return
        self._server_checked = True
        try:
            health = self.health()
        except ServerError:
            return  # a proxy may hide /healthz; the defaults still work
        limit = health.get("max_images", self.batch_size)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ServerError(200, "bad_response", f"/healthz gives max_images {limit!r:.40}, "
                                                   "not a whole number")
        self.batch_size = max(1, min(self.batch_size, limit))
        size = getattr(self.obfuscator, "image_size", IMAGE_SIZE)
        if health.get("image_size") not in (None, [size, size]):
            raise ServerError(200, "image_size_mismatch",
                              f"the server classifies {health['image_size']} images, the "
                              f"obfuscator makes {size}x{size} ones")
        expected = (getattr(self.obfuscator, "manifest", None) or {}).get("classifier", {})
        served = health.get("classifier", {})
        if expected.get("sha256") and served.get("sha256") not in (None, expected["sha256"]):
            warnings.warn(f"the obfuscator was trained for classifier {expected['sha256'][:12]}..."
                          f" but the server runs {served['sha256'][:12]}...; accuracy may suffer",
                          stacklevel=3)


def _source_name(source: ImageInput, index: int) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"image-{index}"


def check_predictions(results: list[Any], names: list[str]) -> None:
    """One well-formed prediction per image sent, in order; otherwise an error naming the
    images whose results are missing or malformed (none is dropped silently)."""
    if len(results) != len(names):
        missing = names[len(results):] or names
        raise ServerError(200, "bad_response", f"sent {len(names)} image(s) but got "
                          f"{len(results)} prediction(s); affected: {', '.join(missing[:10])}")
    for i, (result, name) in enumerate(zip(results, names, strict=True)):
        if not _well_formed(result) or result.get("index", i) != i:
            raise ServerError(200, "bad_response", f"malformed or out-of-order prediction for "
                              f"{name} (position {i})")


def _well_formed(result: Any) -> bool:
    try:
        return (isinstance(result, dict) and isinstance(result["label"], str)
                and isinstance(result["class_index"], int)
                and isinstance(result["confidence"], (int, float))
                and isinstance(result["top_k"], list)
                and all(isinstance(t["label"], str) and isinstance(t["probability"], (int, float))
                        for t in result["top_k"]))
    except (KeyError, TypeError):
        return False


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
