"""Classifiers veil did not write, as a user would bring them (factories for `--classifier`)."""

from __future__ import annotations

import torch
from torch import nn


def efficientnet_b0() -> nn.Module:
    """efficientnet_pytorch's EfficientNet-B0 for 10 classes, random weights."""
    from efficientnet_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-b0", num_classes=10)
    model.set_swish(memory_efficient=False)  # the memory-efficient one is a custom autograd op
    return model


class SmallConvNet(nn.Module):
    """A plain CNN written the way users write theirs: expects normalised images."""

    def __init__(self, num_classes: int = 10, flat_input: int | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        # flat_input: a head sized for one image size only (no global pooling)
        self.pool = nn.Identity() if flat_input else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(flat_input or 32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def small_convnet() -> nn.Module:
    torch.manual_seed(0)
    return SmallConvNet()


def seven_classes() -> nn.Module:
    return SmallConvNet(num_classes=7)


def only_64x64() -> nn.Module:
    return SmallConvNet(flat_input=32 * 16 * 16)


def not_a_module() -> str:
    return "a string"
