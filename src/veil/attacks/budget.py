"""The attacker's budget: recorded with every result it produced."""

from __future__ import annotations

from dataclasses import asdict, dataclass
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

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "unet_width", "inversion_steps",
                     "inversion_restarts"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise ValueError(f"attack budget: {name} must be positive, got "
                                 f"{getattr(self, name)}")
        for name in ("train_size", "inversion_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"attack budget: {name} must be at least 1, got {value}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
