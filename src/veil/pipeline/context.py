"""What every phase of a `veil reproduce` run is given: settings, folders, clock, progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import Dataset
from ..run_inputs import (
    load_data,
)
from .plan import Scale, Slot
from .progress import Progress
from .reproduce_budget import (
    Clock,
)


@dataclass
class Context:
    """Everything a phase needs."""

    scale: Scale
    out: Path
    data: str
    device: torch.device
    precision: str
    seed: int
    compile: bool
    threads: int | None
    quiet: bool
    clock: Clock
    progress: Progress
    train_images: int
    test_images: int
    log: Callable[[str], None] = print
    _data_cache: tuple[Dataset, dict[str, Any]] | None = None

    def run_dir(self, kind: str, slot: Slot) -> Path:
        return self.out / f"{kind}s" / slot.name

    def checkpoint(self, kind: str, slot: Slot) -> Path:
        return self.run_dir(kind, slot) / "model.pt"

    def eval_data(self) -> tuple[Dataset, dict[str, Any]]:
        if self._data_cache is None:
            self._data_cache = load_data(self.data, self.scale.test_subset, self.seed)
        return self._data_cache

    def n_train(self, subset: int | None) -> int:
        return self.train_images if subset is None else min(subset, self.train_images)

    def n_test(self) -> int:
        subset = self.scale.test_subset
        return self.test_images if subset is None else min(subset, self.test_images)
