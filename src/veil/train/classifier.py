"""`veil train classifier`: a fast, plain-PyTorch CIFAR-10 classifier recipe.

Nesterov SGD with a one-cycle learning rate (linear warm-up then linear decay to zero), label
smoothing, no weight decay on BatchNorm or biases, random crop + flip on the device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.runtime import (
    autocast,
    configure_backends,
    environment,
    progress,
    quiet_default,
    resolve_device,
    seed_everything,
)
from ..data import TensorLoader, load_dataset
from ..models import create_model, model_kind
from .engine import Distributed, accuracy, unwrap
from .runs import MetricsLog, config_from_dict, prepare_run_dir, write_config

# Per-model defaults that differ from ClassifierConfig's.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "fastnet": {"epochs": 10, "lr": 0.2, "batch_size": 256},
    "fastnet_tiny": {"epochs": 2, "lr": 0.2, "batch_size": 128},
    "vgg19": {"lr": 0.1},
    "resnet50": {"lr": 0.1},
}


@dataclass
class ClassifierConfig:
    model: str = "fastnet"
    data: str | None = None
    out: str = "runs/classifier"
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    warmup_fraction: float = 0.2
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = True
    compile: bool = False
    train_subset: int | None = None
    test_subset: int | None = None
    threads: int | None = None


def make_config(model: str, **overrides: Any) -> ClassifierConfig:
    """The model's defaults, then overrides (None means 'keep the default')."""
    values = {"model": model, **MODEL_DEFAULTS.get(model, {})}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ClassifierConfig(**values)


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float
              ) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def train_classifier(config: ClassifierConfig, resume: bool = False, quiet: bool | None = None,
                     on_epoch_end: Callable[[dict[str, Any]], None] | None = None
                     ) -> dict[str, Any]:
    """Train; returns the final metrics row. `on_epoch_end(row)` is called after each epoch's
    checkpoint is written (logging, early stops: whatever it raises ends the run, resumable)."""
    quiet = quiet_default() if quiet is None else quiet
    if model_kind(config.model) != "classifier":
        raise ValueError(f"{config.model!r} is not a classifier")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    configure_backends(device)
    ddp = Distributed(device)
    out = prepare_run_dir(config.out, resume) if ddp.is_main else Path(config.out)
    ds = load_dataset(config.data).subset(config.train_subset, config.test_subset, config.seed)
    ds.require_image_size()

    seed_everything(config.seed)
    model = create_model(config.model, num_classes=len(ds.classes)).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader = TensorLoader(ds.train, config.batch_size, shuffle=True,
                                crop_padding=config.crop_padding, flip=config.flip,
                                drop_last=len(ds.train) >= 2 * config.batch_size,
                                seed=config.seed, device=device,
                                channels_last=config.channels_last)
    test_loader = TensorLoader(ds.test, 1024, device=device, channels_last=config.channels_last)
    optimizer = torch.optim.SGD(param_groups(model, config.weight_decay), lr=config.lr,
                                momentum=config.momentum, nesterov=True)
    scheduler = one_cycle(optimizer, config.epochs * len(train_loader), config.warmup_fraction)
    start_epoch = 1
    log = MetricsLog(out / "metrics.jsonl")
    if resume and (out / "last.pt").exists():
        start_epoch = _resume(out / "last.pt", device, model, optimizer, scheduler) + 1
        if ddp.is_main:
            log.truncate_after(start_epoch - 1)
    elif ddp.is_main:
        write_config(out, config)

    train_model = ddp.wrap(model)
    step_model = torch.compile(train_model) if config.compile else train_model
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    previous = log.read() if resume else []
    row: dict[str, Any] = previous[-1] if previous else {}
    wall_before = row.get("wall_s", 0.0)
    for epoch in range(start_epoch, config.epochs + 1):
        stats = train_one_epoch(step_model, model, criterion, optimizer, scheduler, train_loader,
                                ddp, config, epoch, quiet or not ddp.is_main)
        wall_before += stats.pop("seconds")
        row = {"epoch": epoch, **stats,
               "test_acc": accuracy(model, test_loader, device.type, config.precision),
               "lr": scheduler.get_last_lr()[0], "wall_s": round(wall_before, 2)}
        if ddp.is_main:
            log.append(row)
            save_checkpoint(_payload(model, config, row, ds, optimizer, scheduler, epoch),
                            out / "last.pt")
            if not quiet:
                print(_format_row(row), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(row)
    if ddp.is_main:
        final = _payload(model, config, row, ds)
        save_checkpoint(final, out / "model.pt")
    ddp.barrier()
    ddp.close()
    return row


def _resume(last: Path, device: torch.device, model: nn.Module,
            optimizer: torch.optim.Optimizer, scheduler: Any) -> int:
    """Restore model, optimiser and schedule from last.pt; returns its epoch."""
    state = load_checkpoint(last, map_location=device)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["epoch"]


def train_one_epoch(step_model: nn.Module, model: nn.Module, criterion: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, loader: TensorLoader,
                    ddp: Distributed, config: ClassifierConfig, epoch: int, quiet: bool
                    ) -> dict[str, Any]:
    """One pass over this rank's share of the training split; loss and accuracy over all ranks."""
    loader.set_epoch(epoch)
    model.train()
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    seen = 0
    for x, y in progress(loader, len(loader), f"epoch {epoch}/{config.epochs}", quiet):
        x, y = ddp.shard(x), ddp.shard(y)
        with autocast(device, config.precision):
            logits = step_model(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    elapsed = time.perf_counter() - t0
    totals = ddp.all_sum(torch.stack([loss_sum, correct, torch.tensor(float(seen),
                                                                      device=device)]))
    return {"loss": totals[0].item() / totals[2].item(),
            "train_acc": totals[1].item() / totals[2].item(),
            "images_per_s": totals[2].item() / elapsed, "seconds": elapsed}


def _payload(model: nn.Module, config: ClassifierConfig, metrics: dict[str, Any], ds,
             optimizer=None, scheduler=None, epoch: int | None = None) -> dict[str, Any]:
    payload = {
        "kind": "classifier",
        "model_name": config.model,
        "num_classes": len(ds.classes),
        "classes": list(ds.classes),
        "model": unwrap(model).state_dict(),
        "config": asdict(config),
        "metrics": metrics,
        "data": {"name": ds.name, "sha256": ds.source_sha256},
        "environment": environment(),
    }
    if optimizer is not None:
        payload.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                       epoch=epoch)
    return payload


def _format_row(row: dict[str, Any]) -> str:
    return (f"epoch {row['epoch']}: loss {row['loss']:.3f}  train {row['train_acc']:.2%}  "
            f"test {row['test_acc']:.2%}  {row['images_per_s']:.0f} img/s  {row['wall_s']:.0f}s")


def config_from_checkpoint(payload: dict[str, Any]) -> ClassifierConfig:
    return config_from_dict(ClassifierConfig, payload["config"])
