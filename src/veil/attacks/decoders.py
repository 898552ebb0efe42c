"""Decoders a black-box attacker trains from scratch: the paper's architecture and a U-Net."""

from __future__ import annotations

import torch
from torch import nn

from ..models import create_model

DECODERS = ("deobfuscator", "unet")


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNetDecoder(nn.Module):
    """A U-Net (three 2x down/up levels with skip connections) from the sent image to the input.

    With width 32 it has about 1.9M parameters (6x the paper's deobfuscator) and 5.5x its MACs.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.down = nn.ModuleList([_double_conv(3, w[0])] +
                                  [_double_conv(w[i], w[i + 1]) for i in range(3)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2)
                                 for i in reversed(range(3))])
        self.merge = nn.ModuleList([_double_conv(2 * w[i], w[i]) for i in reversed(range(3))])
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(w[0], 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"expected (N, 3, H, W), H and W multiples of 8, got {tuple(x.shape)}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], 1))
        return torch.sigmoid(self.head(x))


def make_decoder(name: str, unet_width: int = 32) -> nn.Module:
    if name == "deobfuscator":
        return create_model("deobfuscator")
    if name == "unet":
        return UNetDecoder(unet_width)
    raise ValueError(f"unknown decoder {name!r}; valid: {', '.join(DECODERS)}")
