"""What both trainers share: their settings' base, the run folder, data parallelism under
torchrun and the training skeleton.

A run folder holds the resolved config (`config.yaml`), a JSON-lines metrics log, `last.pt`
after every epoch (resume) and `model.pt` at the end. A trainer supplies what differs (its
networks, one epoch, its evaluation, what a checkpoint holds); `fit` runs the epochs, as
torchvision's reference scripts do with their `train_one_epoch` / `evaluate` pair:

    process = start_process(config, resume)
    trainer = SomeTrainer(config, process)
    row = fit(trainer, process, config, resume, quiet)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
import torch.distributed as dist
import yaml
from torch import nn

from ..core import env
from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.files import atomic_write
from ..core.imagefit import check_image_size
from ..core.runtime import configure_backends, environment, resolve_device
from ..core.settings import at_least, check_types, one_of, positive, upgrade_names

C = TypeVar("C")
SEEDS = (-(2**63), 2**64 - 1)


@dataclass
class RunConfig:
    """The settings every training run has; each trainer's config adds its own."""

    data: str | None = None
    out: str = "runs/run"
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = True
    train_subset: int | None = None
    test_subset: int | None = None
    threads: int | None = None
    image_size: int | None = None  # fit every image to NxN (core.imagefit); None: as stored

    def __post_init__(self) -> None:
        check_types(self)
        at_least(self, epochs=0, batch_size=1, crop_padding=0)
        at_least(self, train_subset=1, test_subset=1, threads=1)
        positive(self, "lr")
        if not SEEDS[0] <= self.seed <= SEEDS[1]:  # what torch.manual_seed takes
            raise ValueError(f"setting seed = {self.seed}: must be from {SEEDS[0]} to {SEEDS[1]}")
        one_of(self, "precision", ("fp32", "bf16", "fp16"))
        if self.image_size is not None:
            check_image_size(self.image_size, "setting image_size")


def build_config(cls: type[C], defaults: dict[str, Any], overrides: dict[str, Any]) -> C:
    """cls from defaults, then overrides on top (None means 'keep the default')."""
    return cls(**{**defaults, **{k: v for k, v in overrides.items() if v is not None}})


def run_payload(kind: str, config: Any, metrics: dict[str, Any], ds, **content: Any
                ) -> dict[str, Any]:
    """A trained run's checkpoint: its networks (`content`) and what they came from."""
    return {"kind": kind, **content, "classes": list(ds.classes),
            "image_size": list(ds.image_size), "config": asdict(config),
            "metrics": metrics, "data": {"name": ds.name, "sha256": ds.source_sha256},
            "environment": environment()}


class RunDirError(RuntimeError):
    pass


WARM_START_PREFIX = "warm-start-"  # a warm-start stage's resumable state: warm-start-<stage>.pt


def resumable_states(path: str | os.PathLike) -> list[str]:
    """The resumable states a run folder holds (last.pt, a warm-start stage's file), by name."""
    path = Path(path)
    return [p.name for p in [path / "last.pt", *sorted(path.glob(f"{WARM_START_PREFIX}*.pt"))]
            if p.exists()]


def prepare_run_dir(path: str | os.PathLike, resume: bool) -> Path:
    """Create (or, with resume, reuse) a run folder; fails clearly if it is not writable."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RunDirError(f"output folder {path} is not writable: {e.strerror or e}") from e
    held = resumable_states(path)
    if not resume and held:
        raise RunDirError(f"{path} already holds a run ({held[0]}); pass --resume to continue it "
                          f"or choose another --out")
    return path


def write_config(path: Path, config: Any) -> None:
    data = asdict(config) if is_dataclass(config) else dict(config)
    atomic_write(path / "config.yaml", yaml.safe_dump(data, sort_keys=False))


def config_from_dict(cls: type, data: dict[str, Any], source: str = "a saved config") -> Any:
    """A config from a checkpoint's record: old names upgraded, keys it no longer has dropped."""
    data = upgrade_names(cls, data, source)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


class MetricsLog:
    """Appends one JSON object per line; truncates entries beyond `keep_epochs` on resume."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, epoch: int) -> None:
        if not self.path.exists():
            return
        rows = [r for r in self.read() if r.get("epoch", 0) <= epoch]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in rows))

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


# --- data parallelism under torchrun: DDP for the classifier, averaged gradients for the
# obfuscator pair
class Distributed:
    """torchrun-launched data parallelism (DDP); a no-op for a single process."""

    def __init__(self, device: torch.device) -> None:
        self.rank, self.world_size = env.distributed()
        self.enabled = self.world_size > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.enabled:
            return model
        return nn.parallel.DistributedDataParallel(model)

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global batch."""
        return x[self.rank::self.world_size] if self.enabled else x

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t)
        return t

    def average_gradients(self, *modules: nn.Module) -> None:
        """Each gradient becomes its mean over the ranks (in one all-reduce): what DDP does,
        for networks trained together through one backward pass (the obfuscator pair)."""
        if not self.enabled:
            return
        grads = [p.grad for m in modules for p in m.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        for g, mean in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            g.copy_(mean.view_as(g))

    def broadcast(self, *modules: nn.Module) -> None:
        """Rank 0's parameters and buffers (BatchNorm statistics) on every rank."""
        if not self.enabled:
            return
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# --- the training skeleton
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
