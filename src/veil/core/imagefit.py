"""The one rule that brings an image of any size to the model's: the shorter side resized to
`size` (Lanczos), then a centre crop to size x size. Training data (`--image-size`) and the edge
client's camera images follow it alike. Pillow and numpy only (the torch-free edge uses it)."""

from __future__ import annotations

import numpy as np
from PIL import Image

MIN_IMAGE_SIZE = 8  # the obfuscator downsamples by 8
MAX_IMAGE_SIZE = 2048  # 12 MiB an image at 8 bits; far beyond what the obfuscator is sized for


def check_image_size(size: int, name: str = "--image-size") -> int:
    """`size` if veil can fit images to size x size, else a ValueError saying the range."""
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise ValueError(f"{name} must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}, "
                         f"got {size}")
    return size


def recorded_image_size(value: object, where: str) -> list[int] | None:
    """An image size a file records ([height, width], or None when it records none), checked
    before anything is allocated at it: two integers within the sizes veil takes."""
    if value is None:
        return None
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{where}: records image_size {str(value)[:80]}, not [height, width]")
    for side in value:
        check_image_size(side, f"{where}: its recorded image_size")
    return list(value)


def check_fits_in_memory(n_images: int, size: int, available: int, where: str) -> None:
    """Refuse, before allocating, to decode n_images at size x size when the uint8 arrays
    alone would take more than half of the `available` bytes."""
    need = n_images * size * size * 3
    if need > available // 2:
        raise ValueError(f"{where}: {n_images:,} images at {size}x{size} need {need / 2**30:.1f} "
                          f"GiB decoded, more than half of the {available / 2**30:.1f} GiB of "
                          "memory available; pick a smaller --image-size or a smaller source")


def fit_image(im: Image.Image, size: int) -> Image.Image:
    """`im` resized and centre-cropped to size x size (unchanged if it already is)."""
    w, h = im.size
    if w < 1 or h < 1:
        raise ValueError(f"empty image ({w}x{h})")
    if (w, h) != (size, size):
        scale = size / min(w, h)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        im = im.resize(new, Image.Resampling.LANCZOS, reducing_gap=3.0)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return im


def fit_array(array: np.ndarray, size: int) -> np.ndarray:
    """A uint8 HxWx3 RGB array through `fit_image`."""
    if array.shape[:2] == (size, size):
        return np.ascontiguousarray(array)
    return np.asarray(fit_image(Image.fromarray(array, "RGB"), size))


def fit_arrays(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, size, size, 3), image by image."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([fit_array(im, size) for im in images]) if len(images) else \
        np.zeros((0, size, size, 3), np.uint8)
