"""The training skeleton both trainers share: the process's set-up, the run folder, resume, the
metrics log, a checkpoint after every epoch and data parallelism under torchrun.

A trainer supplies what differs (its networks, one epoch, its evaluation, what a checkpoint
holds); `fit` runs the epochs, as torchvision's reference scripts do with their
`train_one_epoch` / `evaluate` pair:

    process = start_process(config, resume)
    trainer = SomeTrainer(config, process)
    row = fit(trainer, process, config, resume, quiet)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.runtime import configure_backends, resolve_device
from .engine import Distributed
from .runs import MetricsLog, prepare_run_dir, write_config


class EpochTrainer(Protocol):
    def warm_start(self, quiet: bool) -> dict[str, Any] | None:
        """Work before the first epoch; its metrics row (epoch 0) or None. A warm start keeps
        itself resumable in the run folder until `fit` checkpoints it as epoch 0."""

    def train_one_epoch(self, epoch: int, quiet: bool) -> dict[str, Any]:
        """One pass over the training split; its statistics, with the time taken as 'seconds'."""

    def evaluate(self) -> dict[str, Any]:
        """Test metrics after an epoch."""

    def payload(self, row: dict[str, Any]) -> dict[str, Any]:
        """What model.pt holds: the trained networks and their metadata."""

    def resume_state(self) -> dict[str, Any]:
        """What last.pt holds beyond payload() to continue exactly (optimisers, schedules)."""

    def load_resume_state(self, state: dict[str, Any]) -> None:
        """Restore networks, optimisers and schedules from a last.pt payload."""

    def format_row(self, row: dict[str, Any]) -> str:
        """One epoch's line on the console."""


@dataclass
class Process:
    """Where a run executes: its device, its rank among torchrun's processes, its folder."""

    device: torch.device
    ddp: Distributed
    out: Path
    log: MetricsLog
    resume: bool = False  # continuing the run in `out`


def start_process(config: Any, resume: bool) -> Process:
    """Threads, device and backends from the config, the process group under torchrun, and the
    run folder (created by rank 0 alone)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    configure_backends(device)
    ddp = Distributed(device)
    out = prepare_run_dir(config.out, resume) if ddp.is_main else Path(config.out)
    return Process(device, ddp, out, MetricsLog(out / "metrics.jsonl"), resume)


def fit(trainer: EpochTrainer, process: Process, config: Any, resume: bool, quiet: bool,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the epochs not yet done; returns the last metrics row. Only rank 0 writes files.
    `on_epoch_end(row)` is called after each epoch's checkpoint is written (logging, early
    stops: whatever it raises ends the run, which stays resumable)."""
    main, out, log = process.ddp.is_main, process.out, process.log
    done = _restore(trainer, process, resume)
    if done is None:
        if main:
            write_config(out, config)
            log.truncate_after(-1)  # rows of an attempt that died before its first epoch
        warm = trainer.warm_start(quiet or not main)
        if warm is not None and main:
            log.append(warm)
            save_checkpoint({**trainer.payload(warm), **trainer.resume_state(), "epoch": 0},
                            out / "last.pt")
    start_epoch = (done or 0) + 1
    previous = log.read()
    row: dict[str, Any] = previous[-1] if previous else {}
    wall = row.get("wall_s", 0.0)
    for epoch in range(start_epoch, config.epochs + 1):
        stats = trainer.train_one_epoch(epoch, quiet or not main)
        wall += stats.pop("seconds")
        row = {"epoch": epoch, **stats, **trainer.evaluate(), "wall_s": round(wall, 2)}
        if main:
            log.append(row)
            save_checkpoint({**trainer.payload(row), **trainer.resume_state(), "epoch": epoch},
                            out / "last.pt")
            if not quiet:
                print(trainer.format_row(row), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(row)
    if main:
        save_checkpoint(trainer.payload(row), out / "model.pt")
    process.ddp.barrier()
    process.ddp.close()
    return row


def _restore(trainer: EpochTrainer, process: Process, resume: bool) -> int | None:
    """The epoch last.pt ended (0: the warm start), or None for a run not yet checkpointed; the
    metrics log is cut back to it."""
    last = process.out / "last.pt"
    if not (resume and last.exists()):
        return None
    state = load_checkpoint(last, map_location=process.device)
    trainer.load_resume_state(state)
    if process.ddp.is_main:
        process.log.truncate_after(state["epoch"])
    process.ddp.barrier()
    return state["epoch"]
