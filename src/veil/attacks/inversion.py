"""White-box attack: find an image that the defense maps to the observed 8-bit image.

x = sigmoid(z); minimise  mean((forward(x) - observed)^2) + tv_weight * TV(x)  over z with Adam,
from several starts (the observed image itself, a flat grey image, then random ones); per image
the start with the lowest objective wins (the attacker cannot see the original, so the objective
decides).
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.runtime import progress
from .budget import AttackBudget


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute difference between neighbouring pixels (anisotropic TV)."""
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def _objective(forward: nn.Module, z: torch.Tensor, observed: torch.Tensor, tv_weight: float
               ) -> torch.Tensor:
    x = torch.sigmoid(z)
    fit = (forward(x).float() - observed).pow(2).flatten(1).mean(1)
    return fit + tv_weight * total_variation(x)


def _one_start(forward: nn.Module, observed: torch.Tensor, z0: torch.Tensor,
               budget: AttackBudget) -> tuple[torch.Tensor, torch.Tensor]:
    z = z0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=budget.inversion_lr)
    with torch.enable_grad():
        for _ in range(budget.inversion_steps):
            loss = _objective(forward, z, observed, budget.tv_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
    with torch.no_grad():
        return torch.sigmoid(z), _objective(forward, z, observed, budget.tv_weight)


def _start(r: int, observed: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Start r in logit space: the observed image, flat grey, then Gaussian noise."""
    if r == 0:
        return torch.logit(observed.clamp(0.02, 0.98))
    if r == 1:
        return torch.zeros_like(observed)
    return torch.randn(observed.shape, generator=generator).to(observed.device)


def invert(forward: nn.Module, observed: torch.Tensor, budget: AttackBudget, seed: int = 0,
           batch_size: int = 256, quiet: bool = True, desc: str = "inversion") -> torch.Tensor:
    """Reconstructions (N, 3, H, W) in [0, 1] of the images behind `observed`."""
    forward.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    batches = range(0, len(observed), batch_size)
    for i in progress(batches, len(batches), desc, quiet):
        target = observed[i:i + batch_size].float()
        best = torch.full_like(target, 0.5)
        best_loss = torch.full((len(target),), float("inf"), device=target.device)
        for r in range(budget.inversion_restarts):
            x, loss = _one_start(forward, target, _start(r, target, generator), budget)
            better = loss < best_loss
            best[better], best_loss[better] = x[better], loss[better]
        out.append(best)
    return torch.cat(out)
