"""A learning curve: obfuscated accuracy on a fixed test slice against training wall time."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..batches import accuracy
from ..core.eightbit import quantize_8bit
from ..core.files import atomic_write
from ..data import TensorLoader


class LearningCurve:
    """Every `every` training images, the 8-bit obfuscated accuracy on `loader`, appended to
    `path` as one JSON line with the training seconds so far (evaluation time excluded)."""

    def __init__(self, path: Path, every: int, obfuscator: nn.Module, classifier: nn.Module,
                 loader: TensorLoader, start_s: float = 0.0) -> None:
        self.path, self.every = Path(path), every
        self.obfuscator, self.classifier, self.loader = obfuscator, classifier, loader
        self.train_s, self.images, self.phase = start_s, 0, "start"
        self.encoder_head: nn.Module | None = None  # set during the encoder warm start
        self._since = time.perf_counter()
        self._next = every
        self._resumed = False

    def on_step(self, images: int) -> None:
        if self._resumed:
            self._drop_rows_after_resume()
        self.images += images
        if self.every > 0 and self.images >= self._next:
            self._next += self.every
            self.record()

    def state_dict(self) -> dict[str, float]:
        """The counters a resumed run continues from (the seconds up to now included)."""
        return {"images": self.images, "train_s": self.train_s + time.perf_counter() - self._since,
                "next": self._next}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Continue from `state`. The rows a killed attempt logged after it are dropped when
        training goes on (a resumed warm start restores each finished stage in turn)."""
        self.images, self.train_s, self._next = state["images"], state["train_s"], state["next"]
        self._since = time.perf_counter()
        self._resumed = True

    def _drop_rows_after_resume(self) -> None:
        self._resumed = False
        if self.path.exists():
            rows = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line)["images"] <= self.images]
            atomic_write(self.path, "".join(line + "\n" for line in rows))

    def record(self) -> None:
        now = time.perf_counter()
        self.train_s += now - self._since
        row = {"phase": self.phase, "images": self.images, "train_s": round(self.train_s, 2)}
        with _evaluating(self.obfuscator, self.encoder_head):
            row["obfuscated_acc"] = accuracy(self.classifier, self.loader, transform=self._sent)
            if self.encoder_head is not None:
                row["encoder_acc"] = accuracy(self.encoder_head, self.loader)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self._since = time.perf_counter()

    def _sent(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_8bit(self.obfuscator(x).float())


@contextlib.contextmanager
def _evaluating(*modules: nn.Module | None) -> Iterator[None]:
    """Eval mode for the modules while the curve measures, their own modes again afterwards."""
    modes = [(m, m.training) for m in modules if m is not None]
    for m, _ in modes:
        m.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.train(mode)
