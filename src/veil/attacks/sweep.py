"""The λ sweep: obfuscators trained against one frozen classifier with several privacy weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..train.common import resumable_states
from ..train.obfuscator import make_config, train_obfuscator

DEFAULT_LAMS = (0.0, 0.1, 0.3, 1.0, 3.0)


def lam_dir(out: Path, lam: float) -> Path:
    return out / f"lam-{lam:g}"


def train_sweep(classifier: str | Path, lams: list[float], out: str | Path, *,
                data: str | None = None, recipe: str = "fast", epochs: int | None = None,
                train_subset: int | None = None, test_subset: int | None = None,
                seed: int = 0, device: str = "auto", quiet: bool = True,
                log: Callable[[str], None] = print
                ) -> tuple[list[Path], dict[str, Any]]:
    """Train (or reuse finished runs of) one obfuscator per λ; returns checkpoints and a record.

    A run folder that already holds model.pt is reused; one with only last.pt is resumed.
    """
    if not lams:
        raise ValueError("the λ sweep needs at least one λ value")
    if any(lam < 0 for lam in lams):
        raise ValueError(f"λ must be non-negative, got {lams}")
    out = Path(out)
    paths = []
    config = None
    for lam in dict.fromkeys(lams):
        config = make_config(recipe, classifier=str(classifier), data=data,
                             out=str(lam_dir(out, lam)), lam=lam, epochs=epochs,
                             train_subset=train_subset, test_subset=test_subset, seed=seed,
                             device=device)
        model = Path(config.out) / "model.pt"
        if model.exists():
            log(f"λ = {lam:g}: reusing {model}")
        else:
            log(f"λ = {lam:g}: training an obfuscator ({config.epochs} epochs) into {config.out}")
            train_obfuscator(config, resume=bool(resumable_states(config.out)), quiet=quiet)
        paths.append(model)
    record = {"lams": list(dict.fromkeys(lams)), "recipe": recipe, "epochs": config.epochs,
              "train_subset": train_subset, "batch_size": config.batch_size, "lr": config.lr,
              "lam_ramp_epochs": config.lam_ramp_epochs, "seed": seed, "folder": str(out)}
    return paths, record
