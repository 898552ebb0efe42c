"""The one 8-bit rule: what is sent is what is evaluated, round(clip(x, 0, 1) * 255) as uint8.

Works on torch tensors and numpy arrays alike without importing torch (the edge client has only
numpy). During training the rounding is straight-through: identity gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def quantize_8bit(x: Any) -> Any:
    """Round an image tensor in [0, 1] to the 256 levels of a uint8 image (no gradient)."""
    return x.clamp(0, 1).mul(255).round().div(255)


def quantize_8bit_ste(x: Any) -> Any:
    """8-bit rounding in the forward pass, identity gradient in the backward pass."""
    return x + (quantize_8bit(x) - x).detach()


def to_uint8(x: Any) -> Any:
    """An image tensor in [0, 1] as the uint8 tensor that is sent."""
    return x.clamp(0, 1).mul(255).round().byte()


def to_uint8_array(x: np.ndarray) -> np.ndarray:
    """The same rule for a numpy array (any layout, kept)."""
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def from_uint8_array(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) images as the float32 (N, 3, H, W) batch in [0, 1] a model takes."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32) / np.float32(255)
