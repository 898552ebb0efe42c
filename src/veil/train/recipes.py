"""The obfuscator's training recipes (`paper`, `fast`, `staged`) and its config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .runs import RunConfig, build_config

DEFAULT_RECIPE = "staged"
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"epochs": 100, "lr": 1e-3, "lr_deobfuscator": 1e-3, "schedule": "step",
              "step_epochs": 30, "crop_padding": 0, "flip": True, "distill": 0.0,
              "warmup_epochs": 0.0, "lam": 1.0, "batch_size": 128},
    "fast": {"epochs": 4, "lr": 2e-3, "lr_deobfuscator": 2e-3, "schedule": "onecycle",
             "step_epochs": 0, "crop_padding": 4, "flip": True, "distill": 1.0,
             "warmup_epochs": 0.5, "lam": 1.0, "batch_size": 128},
    # what the embedded default was trained with: under an hour of a 2-core CPU. The lambda = 0
    # utility stage (utility_epochs) is off: in results/cpu/learning_speed it reached 58 % fast,
    # but the adversarial phase then pulled it back below the recipe without it.
    "staged": {"epochs": 6, "lr": 2e-3, "lr_deobfuscator": 2e-3, "schedule": "onecycle",
               "step_epochs": 0, "crop_padding": 4, "flip": True, "distill": 1.0,
               "warmup_epochs": 0.3, "lam": 1.0, "batch_size": 32, "encoder_epochs": 8.0,
               "utility_epochs": 0.0, "feature_weight": 1.0, "warm_start_lr": 3e-3,
               "warm_start_batch_size": 64},
}


@dataclass
class ObfuscatorConfig(RunConfig):
    classifier: str = ""  # a veil checkpoint, a .pt2 program or package.module:function
    classifier_weights: str | None = None  # the factory's state dict (weights_only=True)
    classifier_mean: list[float] | None = None  # the classifier's input normalisation
    classifier_std: list[float] | None = None
    ensemble: list[str] | None = None  # more frozen classifiers to train against (--classifier
    ensemble_mode: str = "mean"  # given again): "mean" of their losses, or "cycle" one a step
    out: str = "runs/obfuscator"
    recipe: str = "fast"
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    lr_deobfuscator: float = 2e-3
    schedule: str = "onecycle"
    step_epochs: int = 0
    lam: float = 1.0
    distill: float = 1.0
    temperature: float = 4.0
    warmup_epochs: float = 0.5
    identity_epochs: float = 0.0
    encoder_epochs: float = 0.0
    utility_epochs: float = 0.0
    warm_start_lr: float = 3e-3
    warm_start_batch_size: int = 64
    feature_weight: float = 0.0
    curve_every: int = 0
    curve_images: int = 1000
    quantize: bool = True


def make_config(recipe: str = "fast", **overrides: Any) -> ObfuscatorConfig:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    return build_config(ObfuscatorConfig, {"recipe": recipe, **RECIPES[recipe]}, overrides)
