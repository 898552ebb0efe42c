"""Whole image sets through a model in chunks: the one chunked-inference and accuracy code.

Tensors here are float images in [0, 1]; the 8-bit rule is `core.eightbit`.
"""

from __future__ import annotations

import torch
from torch import nn

from .core.eightbit import quantize_8bit
from .data import Dataset, to_tensor_images

BATCH = 500


def test_images(ds: Dataset, device: torch.device) -> torch.Tensor:
    return to_tensor_images(ds.test.images, device).float().div_(255)


@torch.no_grad()
def batched(model: nn.Module, x: torch.Tensor, batch_size: int = BATCH) -> torch.Tensor:
    model.eval()
    return torch.cat([model(channels_last(x[i:i + batch_size])).float().contiguous()
                      for i in range(0, len(x), batch_size)])


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """Convolutions run about 2x faster on the CPU in channels-last layout."""
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def accuracy_on(classifier: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    return round((batched(classifier, x).argmax(1) == labels).float().mean().item(), 6)


def sent_images(obfuscator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What is transmitted: the obfuscated image rounded to 8 bits."""
    return quantize_8bit(batched(obfuscator, x))
