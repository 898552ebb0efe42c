"""What is sent is what is evaluated: 8 bits per channel, straight-through during training."""

from __future__ import annotations

import torch


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round an image in [0, 1] to the 256 levels of a uint8 image (no gradient)."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def quantize_8bit_ste(x: torch.Tensor) -> torch.Tensor:
    """8-bit rounding in the forward pass, identity gradient in the backward pass."""
    return x + (quantize_8bit(x) - x).detach()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8)
