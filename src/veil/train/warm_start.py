"""Warm starts that teach the obfuscator to serve the classifier before the adversary arrives.

Training the whole adversarial step from random weights is slow: the obfuscator must learn to
extract the evidence the classifier needs *and* to write it in a form the classifier reads, while
two image-to-image networks run forward and backward for every image. Two cheaper stages come first:

1. `pretrain_encoder`: the obfuscator's stem and encoder alone, as a classifier (a linear head on
   the pooled 4x4x128 bottleneck), with cross-entropy and distillation from the frozen classifier.
   Only the encoder runs, so an image costs a fraction of an adversarial step; the head is dropped.
2. `pretrain_utility`: the whole obfuscator trained for the frozen classifier alone (lambda = 0),
   without the deobfuscator, so again about half an adversarial step per image.

Both losses are `losses.utility_loss`, the classification term the adversarial step also uses.
`run_warm_starts` runs the stages a config asks for (with `pretrain_identity`, the short stage
that teaches the obfuscator to pass the image through), in order, before the adversarial phase.
A stage given a `StageSaver` is saved after every pass over the data and at its end, so a run
killed during an hour of warm start loses at most one pass, and resumes bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.eightbit import quantize_8bit_ste
from ..core.runtime import autocast, progress
from ..data import TensorLoader
from ..models import FrozenClassifier
from .curve import LearningCurve
from .losses import utility_loss

if TYPE_CHECKING:
    from .obfuscator import ObfuscatorConfig

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
StepHook = Callable[[int], None]


@dataclass
class StageSaver:
    """Keeps one warm-start stage resumable through `path`: its state after every `every`
    steps and at its end. `extra()` is what else must continue exactly (the learning curve's
    counters), given back to `load_extra` on resume; `write` is False on all but one process
    of a torchrun group (every process reads)."""

    path: Path
    every: int
    extra: Callable[[], dict[str, Any]] = dict
    load_extra: Callable[[dict[str, Any]], None] = lambda state: None
    write: bool = True
    resume: bool = True

    def load(self) -> dict[str, Any] | None:
        return load_checkpoint(self.path) if self.resume and self.path.exists() else None

    def save(self, state: dict[str, Any]) -> None:
        if self.write:
            save_checkpoint({"kind": "warm_start", **state, "extra": self.extra()}, self.path)


class EncoderClassifier(nn.Module):
    """The obfuscator's stem and encoder (shared, not copied) with a linear head on the pooled
    bottleneck."""

    def __init__(self, obfuscator: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.stem, self.encoder = obfuscator.stem, obfuscator.encoder
        width = self.encoder[-1].project[0].out_channels
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.stem(x)).mean((2, 3)))


def pretrain_encoder(student: EncoderClassifier, classifier: FrozenClassifier,
                     loader: TensorLoader, steps: int, lr: float, *, distill: float = 1.0,
                     temperature: float = 4.0, device: torch.device | None = None,
                     precision: str = "fp32", quiet: bool = True,
                     on_step: StepHook | None = None, saver: StageSaver | None = None
                     ) -> dict[str, float]:
    """Stage 1: train an obfuscator's stem and encoder, with the head of `student`, as a
    classifier for `steps` batches.

    Only the obfuscator's `stem` and `encoder` (and the head) change. Returns the mean loss and
    training accuracy over the last quarter of the steps."""
    device = device or loader.device
    student.to(device)

    def forward(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            teacher = classifier(x) if distill > 0 else None
        logits = student(x)
        return utility_loss(logits, y, teacher, distill, temperature), logits

    return _train_steps(student, list(student.parameters()), forward, loader, steps, lr, device,
                        precision, "encoder warm start", quiet, on_step, saver)


def pretrain_utility(obfuscator: nn.Module, classifier: FrozenClassifier, loader: TensorLoader,
                     steps: int, lr: float, *, distill: float = 1.0, temperature: float = 4.0,
                     feature_weight: float = 0.0, quantize: bool = True,
                     device: torch.device | None = None, precision: str = "fp32",
                     quiet: bool = True, on_step: StepHook | None = None,
                     saver: StageSaver | None = None) -> dict[str, float]:
    """Stage 2: train the whole obfuscator so that the frozen classifier reads its (8-bit) output,
    with no privacy term, for `steps` batches. Returns what `pretrain_encoder` returns."""
    device = device or loader.device

    def forward(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            teacher, teacher_features = classifier.forward_with_features(x)
        sent = obfuscator(x)
        sent = quantize_8bit_ste(sent) if quantize else sent
        logits, features = classifier.forward_with_features(sent)
        return utility_loss(logits, y, teacher, distill, temperature, features,
                            teacher_features, feature_weight), logits

    return _train_steps(obfuscator, list(obfuscator.parameters()), forward, loader, steps, lr,
                        device, precision, "utility warm start", quiet, on_step, saver)


def _train_steps(module: nn.Module, params: list[nn.Parameter], forward, loader: TensorLoader,
                 steps: int, lr: float, device: torch.device, precision: str, desc: str,
                 quiet: bool, on_step: StepHook | None, saver: StageSaver | None = None
                 ) -> dict[str, float]:
    """Adam with a one-cycle schedule over `steps` batches of `forward(x, y) -> (loss, logits)`.
    Returns the mean loss and accuracy over the last quarter of the steps, the steps and the
    seconds taken (over all attempts, when resumed)."""
    optimizer = torch.optim.Adam(params, lr=lr, fused=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=max(steps, 1),
                                                    pct_start=0.15)
    tail = torch.zeros(3, device=device)
    start, first_epoch, seconds = 0, loader.epoch, 0.0
    state = saver.load() if saver is not None else None
    if state is not None:
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        tail, start = state["tail"].to(device), state["step"]
        first_epoch, seconds = state["first_epoch"], state["seconds"]
        saver.load_extra(state["extra"])
    module.train()
    t0 = time.perf_counter()
    batches = repeat_batches(loader, steps, start, first_epoch)
    for i, (x, y) in enumerate(progress(batches, steps - start, desc, quiet), start):
        with autocast(device, precision):
            loss, logits = forward(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if i >= steps * 3 // 4:
            tail += torch.stack([loss.detach() * len(y), (logits.argmax(1) == y).sum(),
                                 torch.tensor(len(y), device=device)]).float()
        if on_step is not None:
            on_step(len(y))
        if saver is not None and ((i + 1) % saver.every == 0 or i + 1 == steps):
            saver.save({"module": module.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "tail": tail.cpu(), "step": i + 1,
                        "first_epoch": first_epoch,
                        "seconds": seconds + time.perf_counter() - t0})
    if start < steps:
        seconds += time.perf_counter() - t0
    seen = tail[2].clamp_min(1)
    return {"loss": (tail[0] / seen).item(), "train_acc": (tail[1] / seen).item(),
            "steps": steps, "seconds": seconds}


def repeat_batches(loader: TensorLoader, steps: int, start: int = 0,
                   first_epoch: int | None = None) -> Batches:
    """Batches `start`..`steps` of the stream that begins at the loader's epoch `first_epoch`
    (default: its current one) and starts a new epoch as often as needed. A stage resumes at a
    whole pass (`start` a multiple of len(loader)) or at its end; the loader is left at the
    epoch a whole run would leave it at."""
    per_epoch = len(loader)
    first = loader.epoch if first_epoch is None else first_epoch
    if start >= steps:
        loader.set_epoch(first + max(steps - 1, 0) // per_epoch)
        return
    if start % per_epoch:
        raise ValueError(f"a stage resumes after a whole pass over the data, not at step {start}")
    epoch, done = first + start // per_epoch, start
    loader.set_epoch(epoch)
    while done < steps:
        for batch in loader:
            yield batch
            done += 1
            if done >= steps:
                return
        epoch += 1
        loader.set_epoch(epoch)


def pretrain_identity(obfuscator: nn.Module, loader: TensorLoader, steps: int, lr: float,
                      device: torch.device, precision: str = "fp32", quiet: bool = True) -> float:
    """Train the obfuscator alone to reproduce its input (MSE) for `steps` batches; returns the
    last batch's loss. A warm start: the encoder-decoder then passes the image through, which
    the frozen classifier reads, instead of starting the adversarial phase from grey noise."""
    optimizer = torch.optim.Adam(obfuscator.parameters(), lr=lr, fused=True)
    obfuscator.train()
    loss = torch.zeros(())
    for x, _ in progress(repeat_batches(loader, steps), steps, "identity warm start", quiet):
        with autocast(device, precision):
            loss = F.mse_loss(obfuscator(x).float(), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()


def run_warm_starts(config: ObfuscatorConfig, obfuscator: nn.Module, classifier: FrozenClassifier,
                    ds, device: torch.device, quiet: bool, curve: LearningCurve,
                    saver: Callable[[str, int], StageSaver]) -> dict[str, Any]:
    """The warm-start stages the config asks for, in order; their metrics row (epoch 0). The
    encoder and utility stages are saved after every pass (`saver(stage, steps_per_pass)`);
    the short identity stage is not."""
    loader = TensorLoader(ds.train, config.warm_start_batch_size, shuffle=True,
                          crop_padding=config.crop_padding, flip=config.flip,
                          drop_last=len(ds.train) >= 2 * config.warm_start_batch_size,
                          seed=config.seed + 1, device=device,
                          channels_last=config.channels_last)
    loader.set_epoch(0)
    row: dict[str, Any] = {"epoch": 0}
    seconds = 0.0
    common = {"device": device, "precision": config.precision, "quiet": quiet,
              "on_step": curve.on_step}
    epochs = config.warm_start_epochs
    if epochs("identity") > 0:
        curve.phase = "identity"
        t0 = time.perf_counter()
        row["identity_mse"] = pretrain_identity(
            obfuscator, loader, round(epochs("identity") * len(loader)), config.lr, device,
            config.precision, quiet)
        seconds += time.perf_counter() - t0
    if epochs("encoder") > 0:
        curve.phase = "encoder"
        curve.encoder_head = EncoderClassifier(obfuscator, len(ds.classes)).to(device)
        stats = pretrain_encoder(curve.encoder_head, classifier, loader,
                                 round(epochs("encoder") * len(loader)),
                                 config.warm_start_lr, distill=config.distill,
                                 temperature=config.temperature,
                                 saver=saver("encoder", len(loader)), **common)
        curve.encoder_head = None
        seconds += stats["seconds"]
        row.update(encoder_loss=stats["loss"], encoder_train_acc=stats["train_acc"],
                   encoder_s=round(seconds, 2))
    if epochs("utility") > 0:
        curve.phase = "utility"
        stats = pretrain_utility(obfuscator, classifier, loader,
                                 round(epochs("utility") * len(loader)),
                                 config.warm_start_lr, distill=config.distill,
                                 temperature=config.temperature,
                                 feature_weight=config.feature_weight,
                                 quantize=config.quantize,
                                 saver=saver("utility", len(loader)), **common)
        seconds += stats["seconds"]
        row.update(utility_loss=stats["loss"], utility_train_acc=stats["train_acc"])
    row["wall_s"] = round(seconds, 2)
    return row
