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


PSNR_CAP_DB = 100.0  # identical images (+inf dB) count as this in summaries, which must be finite
PERCENTILES = (5, 25, 50, 75, 95)


def summarize(values: torch.Tensor | list[float], cap: float | None = None) -> dict[str, float]:
    """Mean, sample std, min, max and percentiles of per-image values (inf capped at `cap`)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("cannot summarise an empty set of values")
    if cap is not None:
        v = v.clamp(max=cap)
    if not torch.isfinite(v).all():
        raise ValueError("values must be finite (pass cap= for PSNR of identical images)")
    q = torch.quantile(v, torch.tensor([p / 100 for p in PERCENTILES], dtype=torch.float64))
    out = {"n": int(v.numel()), "mean": v.mean().item(),
           "std": v.std().item() if v.numel() > 1 else 0.0,
           "min": v.min().item(), "max": v.max().item()}
    out.update({f"p{p}": q[i].item() for i, p in enumerate(PERCENTILES)})
    return {k: (val if k == "n" else round(val, 6)) for k, val in out.items()}


@torch.no_grad()
def image_scores(original: torch.Tensor, other: torch.Tensor, batch_size: int = 1000
                 ) -> dict[str, dict[str, float]]:
    """Summaries of per-image PSNR (capped) and SSIM of `other` against `original`."""
    if original.shape != other.shape:
        raise ValueError(f"shape mismatch: {tuple(original.shape)} vs {tuple(other.shape)}")
    p, s = [], []
    for i in range(0, len(original), batch_size):
        a, b = original[i:i + batch_size], other[i:i + batch_size].clamp(0, 1)
        p.append(psnr(a, b).cpu())
        s.append(ssim(a, b).cpu())
    return {"psnr": summarize(torch.cat(p), cap=PSNR_CAP_DB), "ssim": summarize(torch.cat(s))}
