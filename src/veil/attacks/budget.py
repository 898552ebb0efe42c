"""The attacker's budget: recorded with every result it produced.

Fresh decoders train either for a fixed number of `epochs` (`until_flat=False`, the quick
budget) or until their validation curve is flat (`until_flat=True`: validated every
`eval_every` images on `val_images` training images they never train on, stopped when the SSIM
gained over the last quarter of the images seen is below `flat_gain`, or when `time_s` /
`max_images` run out), once per loss in `ssim_weights` (0: MSE; w: MSE + w (1 - SSIM)), the
stronger kept and both reported. `BUDGETS` are the presets of `veil attack --budget`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass
class AttackBudget:
    epochs: int = 10  # fresh decoders: passes over the attacker's training images
    train_size: int | None = None  # training images the attacker may query (None: all)
    batch_size: int = 128
    lr: float = 2e-3
    unet_width: int = 32
    inversion_images: int | None = 200  # test images attacked by white-box inversion
    inversion_steps: int = 300
    inversion_restarts: int = 3
    inversion_lr: float = 0.05
    tv_weight: float = 0.01
    until_flat: bool = False  # fresh decoders: train until the validation curve is flat
    time_s: float | None = None  # per attacker and loss (None: no limit)
    max_images: int | None = None  # per attacker and loss (None: no limit)
    ssim_weights: tuple[float, ...] = (0.0,)
    val_images: int = 500
    eval_every: int = 4000
    flat_gain: float = 0.005
    # linkage: the gallery of test photos each sent image is looked up in, and the learned
    # matcher's budget (quick: `epochs` passes over the training photos; until flat: the
    # time and pair caps below, None for none)
    gallery_size: int = 1000
    matcher_width: int = 32
    matcher_time_s: float | None = None
    matcher_max_images: int | None = None
    matcher_eval_every: int = 5000
    # linkage against a randomised obfuscator: candidates fitted per received image, and the
    # optimiser steps on each one's noise
    fit_shortlist: int = 10
    fit_steps: int = 40

    def __post_init__(self) -> None:
        self.ssim_weights = tuple(float(w) for w in self.ssim_weights)
        if not self.ssim_weights or min(self.ssim_weights) < 0:
            raise ValueError(f"attack budget: ssim_weights must be non-negative, got "
                             f"{list(self.ssim_weights)}")
        self._check_counts()

    def _check_counts(self) -> None:
        for name in ("epochs", "batch_size", "unet_width", "inversion_steps",
                     "inversion_restarts", "gallery_size", "matcher_width",
                     "matcher_eval_every", "fit_shortlist", "fit_steps"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise ValueError(f"attack budget: {name} must be positive, got "
                                 f"{getattr(self, name)}")
        for name in ("train_size", "inversion_images", "max_images", "matcher_max_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"attack budget: {name} must be at least 1, got {value}")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ssim_weights"] = list(self.ssim_weights)
        return data


# `veil attack --budget`: quick = fixed epochs (minutes); hour = until flat, capped: timed as
# the CPU-scale run of results/cpu/tradeoff (the default, λ 0 and 10, the six default baselines:
# 61 min on one thread of the 2-core machine beside a training run; the fresh decoders took
# 126-213 s, the U-Nets stopped at the 200 s cap, inversion 1-95 s); full = until every curve is
# flat, no cap, and inversion from three starts for 300 steps.
BUDGETS: dict[str, AttackBudget] = {
    "quick": AttackBudget(),
    "hour": AttackBudget(until_flat=True, unet_width=48, batch_size=64, time_s=200.0,
                         max_images=30_000, ssim_weights=(1.0,), inversion_images=200,
                         inversion_steps=120, inversion_restarts=1, matcher_time_s=600.0),
    "full": AttackBudget(until_flat=True, unet_width=48, batch_size=64, ssim_weights=(0.0, 1.0),
                         inversion_images=200),
}


def preset(name: str, **overrides: Any) -> AttackBudget:
    """A named budget with some settings changed (None leaves one as it is)."""
    if name not in BUDGETS:
        raise ValueError(f"unknown attack budget {name!r}; valid: {', '.join(BUDGETS)}")
    return replace(BUDGETS[name], **{k: v for k, v in overrides.items() if v is not None})
