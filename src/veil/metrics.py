"""Image-quality metrics between originals and reconstructions, both in [0, 1]."""

from __future__ import annotations

import torch
from pytorch_msssim import ssim as _ssim
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure as _ms_ssim,
)

# MS-SSIM (Wang et al. 2003) at three scales, 32 → 16 → 8 pixels (five do not fit a 32x32
# image), with the first three of the standard scale weights renormalised, and a 7x7 window
MS_SSIM_WEIGHTS = tuple(w / 0.6305 for w in (0.0448, 0.2856, 0.3001))
MS_SSIM_WINDOW = 7


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB for (N, C, H, W) tensors; identical images give +inf."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM (Gaussian window 11, sigma 1.5; Wang et al. 2004) via pytorch-msssim."""
    return _ssim(x.float(), y.float(), data_range=data_range, size_average=False)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image multi-scale SSIM (torchmetrics), which tracks what people perceive more closely
    than SSIM at one scale; it needs images of at least 32x32."""
    return _ms_ssim(y.float(), x.float(), data_range=data_range, kernel_size=MS_SSIM_WINDOW,
                    betas=MS_SSIM_WEIGHTS, reduction="none")


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
    """Summaries of per-image PSNR (capped), SSIM and, on images of at least 32x32, MS-SSIM of
    `other` against `original`."""
    if original.shape != other.shape:
        raise ValueError(f"shape mismatch: {tuple(original.shape)} vs {tuple(other.shape)}")
    multi_scale = min(original.shape[-2:]) >= 32
    p, s, m = [], [], []
    for i in range(0, len(original), batch_size):
        a, b = original[i:i + batch_size], other[i:i + batch_size].clamp(0, 1)
        p.append(psnr(a, b).cpu())
        s.append(ssim(a, b).cpu())
        if multi_scale:
            m.append(ms_ssim(a, b).cpu())
    scores = {"psnr": summarize(torch.cat(p), cap=PSNR_CAP_DB), "ssim": summarize(torch.cat(s))}
    if multi_scale:
        scores["ms_ssim"] = summarize(torch.cat(m))
    return scores
