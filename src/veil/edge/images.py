"""Camera images in, the 8-bit PNG that leaves the device out.

Any size or format Pillow reads has its shorter side resized to the obfuscator's size (32 for
CIFAR-10) and is centre-cropped to a square (`veil.core.imagefit`); the obfuscator's float
output is checked and rounded to 8 bits (`quantize_uint8`) and PNG-encoded (`encode_png`, a
small encoder of our own: filter choice per row, no metadata).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core import imagefit
from ..core.eightbit import to_uint8_array
from ..core.wire import PNG_SIGNATURE

IMAGE_SIZE = 32
ImageInput = str | os.PathLike | bytes | np.ndarray


class ImageError(ValueError):
    """An input that is not a readable image."""


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
    """Resize the shorter side to `size` (Lanczos), then centre-crop to size x size
    (`veil.core.imagefit`, the rule the training data follows too)."""
    try:
        return imagefit.fit_image(im, size)
    except ValueError as e:  # an empty image
        raise ImageError(str(e)) from None


def fit_array(array: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ImageError(f"arrays must be uint8 HxWx3 RGB, got {array.dtype} {array.shape}")
    if array.shape[:2] == (size, size):
        return np.ascontiguousarray(array)
    if min(array.shape[:2]) < 1:
        raise ImageError(f"empty image ({array.shape[1]}x{array.shape[0]})")
    return imagefit.fit_array(array, size)


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


