"""The obfuscator's config and its recipes (`staged`, `fast`, `paper`), each a config instance.

`ObfuscatorConfig()`'s defaults are the default recipe's (`staged`); the others are `staged`
with what they change (`dataclasses.replace`), and a run's options go on top the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ..core.settings import setting_names, unknown_setting, upgrade_names
from .runs import RunConfig, at_least, one_of, positive

# the warm-start stages, in the order they run (train/warm_start.py)
WARM_START_STAGES = ("identity", "encoder", "utility")


@dataclass
class ObfuscatorConfig(RunConfig):
    """The settings of one obfuscator run; the defaults are the `staged` recipe: a cheap warm
    start of the encoder as a classifier, then one-cycle adversarial training at batch 32 with
    distillation and the classifier's penultimate features as a dense target (the embedded
    default was trained so, in under an hour of a 2-core CPU)."""

    classifier: str = ""  # a veil checkpoint, a .pt2 program or package.module:function
    classifier_weights: str | None = None  # the factory's state dict (weights_only=True)
    classifier_mean: list[float] | None = None  # the classifier's input normalisation
    classifier_std: list[float] | None = None
    ensemble: list[str] | None = None  # more frozen classifiers to train against (--classifier
    ensemble_mode: str = "mean"  # given again): "mean" of their losses, or "cycle" one a step
    out: str = "runs/obfuscator"
    recipe: str = "staged"  # the recipe these settings started from
    epochs: int = 6  # adversarial epochs
    batch_size: int = 32
    lr: float = 2e-3
    lr_deobfuscator: float = 2e-3
    schedule: str = "onecycle"  # "onecycle", "step" (lr / 10 every step_epochs) or "constant"
    step_epochs: int = 0
    lam: float = 1.0  # λ, the weight of the privacy term
    lam_ramp_epochs: float = 0.3  # λ rises linearly from 0 over these first adversarial epochs
    distill: float = 1.0  # weight of distilling the classifier's outputs on the plain image
    temperature: float = 4.0
    feature_weight: float = 1.0  # weight of the classifier's penultimate features as a target
    # warm-start stage -> epochs, run in WARM_START_STAGES order before the adversarial phase:
    # "identity" (reproduce the input), "encoder" (the encoder alone as a classifier),
    # "utility" (the obfuscator for the classifier alone, no deobfuscator)
    warm_start: dict[str, float] = field(default_factory=lambda: {"encoder": 8.0})
    warm_start_lr: float = 3e-3
    warm_start_batch_size: int = 64
    curve_every: int = 0  # log obfuscated accuracy every N training images (0: off)
    curve_images: int = 1000
    quantize: bool = True  # 8-bit straight-through quantisation of the sent image

    RENAMED: ClassVar[dict[str, str]] = {
        "warmup_epochs": "lam_ramp_epochs", "identity_epochs": "warm_start.identity",
        "encoder_epochs": "warm_start.encoder", "utility_epochs": "warm_start.utility"}

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of(self, "schedule", ("onecycle", "step", "constant"))
        one_of(self, "ensemble_mode", ("mean", "cycle"))
        at_least(self, lam=0, lam_ramp_epochs=0, distill=0, feature_weight=0, step_epochs=0,
                 warm_start_batch_size=1, curve_every=0, curve_images=1)
        positive(self, "lr_deobfuscator", "temperature", "warm_start_lr")
        unknown = [stage for stage in self.warm_start if stage not in WARM_START_STAGES]
        if unknown:
            raise ValueError(f"setting warm_start: unknown stage {unknown[0]!r} (stages: "
                             f"{', '.join(WARM_START_STAGES)})")
        if any(epochs < 0 for epochs in self.warm_start.values()):
            raise ValueError(f"setting warm_start = {self.warm_start}: epochs must be at least 0")
        # one spelling per meaning: stages in the order they run, a stage of 0 epochs left out
        self.warm_start = {stage: float(self.warm_start[stage]) for stage in WARM_START_STAGES
                           if self.warm_start.get(stage, 0) > 0}

    def warm_start_epochs(self, stage: str) -> float:
        return self.warm_start.get(stage, 0.0)


STAGED = ObfuscatorConfig()
RECIPES: dict[str, ObfuscatorConfig] = {
    "staged": STAGED,
    # adversarial only, for limited compute. The λ = 0 utility stage is off in staged too: in
    # results/cpu/learning_speed it reached 58 % fast, but the adversarial phase then pulled it
    # back below the recipe without it.
    "fast": replace(STAGED, recipe="fast", epochs=4, batch_size=128, lam_ramp_epochs=0.5,
                    feature_weight=0.0, warm_start={}),
    # Appendix A exactly: Adam, lr 1e-3, 100 epochs, lr / 10 every 30, flips only, no extras
    "paper": replace(STAGED, recipe="paper", epochs=100, batch_size=128, lr=1e-3,
                     lr_deobfuscator=1e-3, schedule="step", step_epochs=30, crop_padding=0,
                     distill=0.0, lam_ramp_epochs=0.0, feature_weight=0.0, warm_start={}),
}
DEFAULT_RECIPE = STAGED.recipe


def make_config(recipe: str = DEFAULT_RECIPE, **overrides: Any) -> ObfuscatorConfig:
    """The recipe with `overrides` on top (None means 'keep the recipe's'); old setting names
    are read as the new ones, with a notice."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    base = RECIPES[recipe]
    overrides = upgrade_names(ObfuscatorConfig, overrides, "the given settings", base=base)
    given = {k: v for k, v in overrides.items() if v is not None}
    for name in given:
        if name not in setting_names(ObfuscatorConfig):
            raise unknown_setting(ObfuscatorConfig, name, "make_config")
    return replace(base, **{"warm_start": dict(base.warm_start), **given})
