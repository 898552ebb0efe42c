"""Baseline image transforms scored on the same footing as the obfuscator.

Names (an optional `:value` sets the parameter): `downsample4`, `downsample8`
(`downsample:F`: F x F area averaging, bilinear upsampling back), `blur` (`blur:SIGMA`, Gaussian,
default sigma 2 px), `pixelate` (`pixelate:B`: B x B blocks, default 4), `noise` (`noise:STD`,
additive Gaussian in [0, 1] units, default 0.2), `random_obfuscator` (`random_obfuscator:SEED`:
the paper's obfuscator with random weights, BatchNorm statistics measured on training images).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models import create_model
from .defenses import Defense

DEFAULT_BASELINES = ("downsample4", "downsample8", "blur", "pixelate", "noise",
                     "random_obfuscator")


class Downsample(nn.Module):
    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = F.avg_pool2d(x, self.factor)
        return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


class Pixelate(nn.Module):
    def __init__(self, block: int) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(F.avg_pool2d(x, self.block), size=x.shape[-2:], mode="nearest")


class GaussianBlur(nn.Module):
    def __init__(self, sigma: float) -> None:
        super().__init__()
        radius = max(1, math.ceil(3 * sigma))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-t**2 / (2 * sigma**2))
        self.register_buffer("kernel", kernel / kernel.sum())
        self.radius = radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = self.kernel.to(x.dtype)
        x = F.pad(x, (self.radius,) * 4, mode="replicate")
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@torch.no_grad()
def random_obfuscator(seed: int, calibration: torch.Tensor) -> nn.Module:
    """Random weights (seeded); BatchNorm statistics measured on `calibration` images."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model("obfuscator").to(calibration.device)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    for i in range(0, len(calibration), 256):
        model(calibration[i:i + 256])
    return model.eval()


def _parse(spec: str) -> tuple[str, float | None]:
    name, _, value = spec.partition(":")
    if not value:
        return name, None
    try:
        return name, float(value)
    except ValueError:
        raise ValueError(f"baseline {spec!r}: the value after ':' must be a number") from None


def _int(value: float, what: str) -> int:
    if value != int(value) or value < 1:
        raise ValueError(f"{what} must be a positive whole number, got {value:g}")
    return int(value)


BuildFn = Callable[[float | None, torch.Tensor, int], tuple[nn.Module, float, str, str]]


def _downsample(default: int | None) -> BuildFn:
    def build(v, _calib, _seed):
        f = _int(v if v is not None else default or 4, "the downsampling factor")
        return Downsample(f), 0.0, f"downsample{f}", (f"{f}x{f} area downsampling, bilinear "
                                                      f"upsampling")
    return build


def _blur(v, _calib, _seed):
    sigma = 2.0 if v is None else v
    if sigma <= 0:
        raise ValueError(f"blur sigma must be positive, got {sigma:g}")
    return GaussianBlur(sigma), 0.0, f"blur{sigma:g}", f"Gaussian blur, sigma {sigma:g} px"


def _pixelate(v, _calib, _seed):
    b = _int(4 if v is None else v, "the pixelation block size")
    return Pixelate(b), 0.0, f"pixelate{b}", f"pixelation in {b}x{b} blocks"


def _noise(v, _calib, _seed):
    std = 0.2 if v is None else v
    if std <= 0:
        raise ValueError(f"noise std must be positive, got {std:g}")
    return nn.Identity(), std, f"noise{std:g}", f"additive Gaussian noise, std {std:g}"


def _identity(v, _calib, _seed):
    if v is not None:
        raise ValueError("baseline 'identity' takes no value")
    return nn.Identity(), 0.0, "identity", "no defense: the photo itself is sent"


def _random(v, calib, seed):
    s = seed if v is None else int(v)
    return (random_obfuscator(s, calib), 0.0, "random_obfuscator" + ("" if v is None else f"{s}"),
            f"untrained obfuscator (random weights, seed {s}; BatchNorm statistics from "
            f"{len(calib)} training images)")


BASELINES: dict[str, BuildFn] = {
    "downsample": _downsample(None), "downsample4": _downsample(4),
    "downsample8": _downsample(8), "blur": _blur, "pixelate": _pixelate, "noise": _noise,
    "random_obfuscator": _random, "identity": _identity,
}


def expand_names(specs: list[str]) -> list[str]:
    """'all' stands for the default set; duplicates are dropped, order kept."""
    out: list[str] = []
    for spec in specs:
        for s in DEFAULT_BASELINES if spec == "all" else [spec]:
            if s not in out:
                out.append(s)
    return out


def make_baseline(spec: str, calibration: torch.Tensor, seed: int = 0) -> Defense:
    """A baseline defense from its name, e.g. 'blur', 'blur:1.5', 'downsample8', 'noise:0.1'."""
    name, value = _parse(spec)
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {spec!r}; valid: {', '.join(BASELINES)} (optionally "
                         f"with ':value'), or 'all'")
    if name in ("downsample4", "downsample8") and value is not None:
        raise ValueError(f"baseline {spec!r}: use 'downsample:F' to choose the factor")
    module, noise, label, description = BASELINES[name](value, calibration, seed)
    return Defense(label, "baseline", module.to(calibration.device), description, noise=noise,
                   info={"spec": spec}, seed=seed)
