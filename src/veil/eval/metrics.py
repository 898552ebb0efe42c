"""Image-quality metrics between originals and reconstructions, both in [0, 1]."""

from __future__ import annotations

import torch
from pytorch_msssim import ssim as _ssim


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB for (N, C, H, W) tensors; identical images give +inf."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, sigma 1.5; Wang et al. 2004) via pytorch-msssim."""
    return _ssim(x.float(), y.float(), data_range=data_range, size_average=False)
