"""The paper's obfuscator / deobfuscator (Table 4 and Appendix A).

Layout (3x32x32 input):

    conv3x3 3->32                                  32x32
    bottleneck 32->32,  stride 2 (in depthwise)    16x16
    bottleneck 32->64,  stride 2                    8x8
    bottleneck 64->128, stride 2                    4x4
    up-bottleneck 128->64  (upsample after it)      8x8
    up-bottleneck 64->32   (upsample after expand) 16x16
    up-bottleneck 32->3    (upsample after expand) 32x32

Every bottleneck is 1x1 conv (expand x6) -> 3x3 depthwise -> 1x1 conv (project); every conv is
bias-free and followed by BatchNorm and LeakyReLU. This gives exactly the paper's 324,518
parameters. The paper leaves the strides and where the 2x nearest-neighbour upsampling sits open;
the choice above is MobileNetV2's (stride in the depthwise conv) for the encoder, and for the
decoder the placement that gives the paper's ~2.6e7 multiply-accumulates (26.08M measured).
The last layer's LeakyReLU is replaced by a sigmoid so that the output is an image in [0, 1]
(what is transmitted), adding no parameters.

`noise` draws fresh Gaussian noise of that standard deviation into the bottleneck (the encoder's
4x4 output, scaled to unit RMS per image first) on every call, in training and in use:
randomness per request, inside the network, so that two sends of one photo differ and re-running
the weights on a candidate photo does not reproduce what was sent (0: deterministic, the
paper's network).

`width` is MobileNet's width multiplier α: every inner channel count is scaled by it (rounded
to a multiple of 8, at least 8), the 3-channel input and output stay. α = 1 is exactly the
paper's network; α = 0.5 and 0.25 cost about a quarter and a sixteenth of its MACs, for a
device that cannot spend 2.6e7.
"""

from __future__ import annotations

import torch
from torch import nn

EXPANSION = 6
NEGATIVE_SLOPE = 0.2
CHANNELS = (32, 32, 64, 128)  # stem, then the three encoder bottlenecks' outputs (α = 1)


def scaled_channels(width: float) -> tuple[int, ...]:
    """The inner channel counts at width multiplier `width` (MobileNet's rounding)."""
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"obfuscator width multiplier must be in (0, 4], got {width!r}")
    return tuple(max(8, int(c * width + 4) // 8 * 8) for c in CHANNELS)


def conv_bn_act(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """MobileNetV2-style bottleneck; optional 2x nearest upsampling after expansion or output."""

    def __init__(self, cin: int, cout: int, stride: int = 1, upsample: str | None = None,
                 last: bool = False) -> None:
        super().__init__()
        if upsample not in (None, "mid", "out"):
            raise ValueError(f"upsample must be None, 'mid' or 'out', got {upsample!r}")
        hidden = cin * EXPANSION
        self.expand = conv_bn_act(cin, hidden)
        self.upsample_mid = nn.Upsample(scale_factor=2) if upsample == "mid" else nn.Identity()
        self.depthwise = conv_bn_act(hidden, hidden, 3, stride, groups=hidden)
        self.project = conv_bn_act(hidden, cout, act=not last)
        self.upsample_out = nn.Upsample(scale_factor=2) if upsample == "out" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample_mid(self.expand(x))
        return self.upsample_out(self.project(self.depthwise(x)))


class Obfuscator(nn.Module):
    """Image-to-image network of the paper; also used, untouched, as the deobfuscator."""

    def __init__(self, width: float = 1.0, noise: float = 0.0) -> None:
        super().__init__()
        c0, c1, c2, c3 = scaled_channels(width)
        if not (isinstance(noise, (int, float)) and 0 <= noise < float("inf")):
            raise ValueError(f"obfuscator bottleneck noise must be a finite std of 0 or more, "
                             f"got {noise!r}")
        self.width, self.noise = float(width), float(noise)
        self.stem = conv_bn_act(3, c0, 3)
        self.encoder = nn.Sequential(
            Bottleneck(c0, c1, stride=2),
            Bottleneck(c1, c2, stride=2),
            Bottleneck(c2, c3, stride=2),
        )
        self.decoder = nn.Sequential(
            Bottleneck(c3, c2, upsample="out"),
            Bottleneck(c2, c1, upsample="mid"),
            Bottleneck(c1, 3, upsample="mid", last=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(
                f"expected images of shape (N, 3, H, W) with H and W multiples of 8, "
                f"got {tuple(x.shape)}"
            )
        return self.decode(self.encode(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The bottleneck before the noise (what a fitting attacker computes per candidate)."""
        return self.encoder(self.stem(x))

    def decode(self, z: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """The image from bottleneck z, with `noise` (standard normal, scaled by `self.noise`)
        added first: fresh noise when None, none when `self.noise` is 0."""
        if self.noise:
            # each image's code at unit RMS first, so that the encoder cannot drown a noise of
            # fixed size by scaling its code up: the signal-to-noise ratio stays 1 / noise²
            z = z / z.pow(2).mean((1, 2, 3), keepdim=True).add(1e-6).sqrt()
            z = z + self.noise * (torch.randn_like(z) if noise is None else noise)
        return torch.sigmoid(self.decoder(z))


def obfuscator(width: float = 1.0, noise: float = 0.0) -> Obfuscator:
    return Obfuscator(width, noise)


def deobfuscator(width: float = 1.0) -> Obfuscator:
    return Obfuscator(width)
