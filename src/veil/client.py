"""The edge side of veil: obfuscate on the device, send only the 8-bit obfuscated image.

    from veil.client import VeilClient
    with VeilClient("http://127.0.0.1:8000", "obfuscator.onnx") as client:
        for p in client.classify(["cat.jpg", "dog.png"]):
            print(p.source, p.label, p.confidence)

Each image (any size or format Pillow reads) has its shorter side resized to 32 and is
centre-cropped to 32x32, runs through the ONNX obfuscator with onnxruntime, is rounded to 8 bits
per channel and PNG-encoded; those PNG bytes, under a neutral file name, are all that leaves the
device. This module needs numpy, pillow, onnxruntime and httpx (`pip install veil[edge]`) and
never imports torch, unless a PyTorch checkpoint is given as the obfuscator.
"""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .core.eightbit import from_uint8_array, to_uint8_array
from .core.files import sha256_bytes
from .core.wire import PNG_SIGNATURE, manifest_path_for

IMAGE_SIZE = 32
ImageInput = str | os.PathLike | bytes | np.ndarray
Obfuscate = Callable[[np.ndarray], np.ndarray]


class ImageError(ValueError):
    """An input that is not a readable image."""


class ServerError(RuntimeError):
    """The server answered with an error (status, machine-readable code, message)."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"server answered {status} ({code}): {detail}")
        self.status, self.code, self.detail = status, code, detail


# --- images ------------------------------------------------------------------------------------
def load_image(source: ImageInput, size: int = IMAGE_SIZE) -> np.ndarray:
    """An image file, encoded bytes or an HxWx3 uint8 array -> uint8 (size, size, 3) RGB."""
    if isinstance(source, np.ndarray):
        return fit_array(source, size)
    name = "<bytes>" if isinstance(source, bytes) else os.fspath(source)
    if not isinstance(source, bytes) and not Path(name).is_file():
        raise FileNotFoundError(f"no such image file: {name}")
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else name) as im:
            im.load()
            return np.asarray(fit_image(_to_rgb(ImageOps.exif_transpose(im)), size))
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ImageError(f"{name}: not an image Pillow can read ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        scale = 1 / 257 if im.mode != "F" else 255
        return Image.fromarray(np.clip(np.asarray(im, np.float64) * scale, 0, 255)
                               .round().astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def fit_image(im: Image.Image, size: int = IMAGE_SIZE) -> Image.Image:
    """Resize the shorter side to `size` (Lanczos), then centre-crop to size x size."""
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageError(f"empty image ({w}x{h})")
    if (w, h) != (size, size):
        scale = size / min(w, h)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        im = im.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return im


def fit_array(array: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ImageError(f"arrays must be uint8 HxWx3 RGB, got {array.dtype} {array.shape}")
    if array.shape[:2] == (size, size):
        return np.ascontiguousarray(array)
    return np.asarray(fit_image(Image.fromarray(array, "RGB"), size))


def encode_png(image: np.ndarray) -> bytes:
    """uint8 HxWx3 -> an 8-bit RGB PNG (deterministic).

    All rows share one filter (None, Sub or Up, whichever compresses best): within a few
    percent of adaptive filtering on obfuscated images, and the server decodes such PNGs with
    zlib and numpy alone, at a fraction of Pillow's per-image cost.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected uint8 HxWx3, got {image.dtype} {image.shape}")
    height, width, _ = image.shape
    data = min((zlib.compress(_filter_rows(image, f), 9) for f in (0, 1, 2)), key=len)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _filter_rows(image: np.ndarray, kind: int) -> bytes:
    x = image.astype(np.int16)
    if kind == 1:
        x = np.diff(x, axis=1, prepend=0)
    elif kind == 2:
        x = np.diff(x, axis=0, prepend=0)
    rows = (x % 256).astype(np.uint8).reshape(len(image), -1)
    return np.hstack([np.full((len(image), 1), kind, np.uint8), rows]).tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


OUTPUT_TOLERANCE = 1e-3  # float rounding around the sigmoid's [0, 1]; more is a broken model


def quantize_uint8(x: np.ndarray) -> np.ndarray:
    """float NCHW in [0, 1] -> uint8 NHWC, the 8-bit image that is transmitted.

    Refuses NaN, infinities and values outside [0, 1]: an obfuscator that outputs them is not
    the one that was evaluated, and its 8-bit image (NaN casts to an arbitrary byte) should not
    leave the device."""
    if not np.isfinite(x).all():
        raise ValueError("the obfuscator produced NaN or infinite values; refusing to send them "
                         "(is the model file damaged?)")
    if x.min() < -OUTPUT_TOLERANCE or x.max() > 1 + OUTPUT_TOLERANCE:
        raise ValueError(f"the obfuscator's output lies outside [0, 1] ({x.min():.3g} to "
                         f"{x.max():.3g}); refusing to send it (is it the exported obfuscator?)")
    return to_uint8_array(x).transpose(0, 2, 3, 1)


# --- obfuscators -------------------------------------------------------------------------------
class OnnxObfuscator:
    """The exported obfuscator under onnxruntime: uint8 NHWC in, 8-bit obfuscated NHWC out."""

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such ONNX obfuscator: {self.path}")
        self.manifest = read_manifest(self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a loadable ONNX model ({e})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.input_shape = self.session.get_inputs()[0].shape  # [N, 3, H, W]; N symbolic

    def check_input(self, x: np.ndarray) -> None:
        """The images must have the size the model was exported for."""
        expected = [d if isinstance(d, int) else None for d in self.input_shape[1:]]
        got = list(x.shape[1:])
        if len(expected) != len(got) or any(e is not None and e != g
                                             for e, g in zip(expected, got, strict=True)):
            raise ValueError(f"{self.path}: the model takes images of shape "
                             f"{tuple(self.input_shape[1:])} (C, H, W), got {tuple(got)}")

    def run_float(self, x: np.ndarray) -> np.ndarray:
        self.check_input(x)
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return quantize_uint8(self.run_float(from_uint8_array(images)))


class TorchObfuscator:
    """An obfuscator checkpoint run with PyTorch (imports torch; for machines that have it)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import torch

        from .train.obfuscator import load_obfuscator as load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self.model, _, self.payload = load_checkpoint(path)
        self.manifest = {"classifier": self.payload.get("classifier", {}),
                         "classes": self.payload.get("classes", [])}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(from_uint8_array(images))).numpy()
        return quantize_uint8(out)


def load_obfuscator(path: str | os.PathLike, threads: int = 1) -> OnnxObfuscator | TorchObfuscator:
    """`.onnx` -> onnxruntime (torch-free); anything else is read as a PyTorch checkpoint."""
    if Path(path).suffix.lower() == ".onnx":
        return OnnxObfuscator(path, threads)
    return TorchObfuscator(path, threads)


def read_manifest(onnx_path: Path) -> dict[str, Any]:
    """The export manifest beside the ONNX file ({} if absent); checks the file's sha256."""
    manifest_path = manifest_path_for(onnx_path)
    if not manifest_path.is_file():
        return {}
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{manifest_path}: not a JSON manifest ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("onnx", {}), dict):
        raise ValueError(f"{manifest_path}: a manifest is a JSON object with an 'onnx' object, "
                         f"got {type(manifest).__name__}")
    expected = manifest.get("onnx", {}).get("sha256")
    if expected and sha256_bytes(onnx_path.read_bytes()) != expected:
        raise ValueError(f"{onnx_path}: sha256 differs from {manifest_path.name}; the model was "
                         f"modified or the manifest belongs to another export")
    return manifest


# --- the client --------------------------------------------------------------------------------
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
        images = np.stack([load_image(x) for x in inputs])
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
