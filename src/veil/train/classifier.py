"""`veil train classifier`: a fast, plain-PyTorch CIFAR-10 classifier recipe.

Nesterov SGD with a one-cycle learning rate (linear warm-up then linear decay to zero), label
smoothing, no weight decay on BatchNorm or biases, random crop + flip on the device. With
`whiten`, the first (2x2) convolution starts as a fixed whitening of the training images'
patches and only its bias learns; with `view_averaged_eval`, the last epoch is also tested
over six views (the model's `_tta` entry).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..batches import accuracy
from ..core.runtime import autocast, progress, quiet_default, seed_everything
from ..core.settings import at_least
from ..data import Dataset, TensorLoader, load_dataset, to_tensor_images
from ..models import create_model, model_kind
from ..models.classifiers import ViewAveraged
from .common import (
    Distributed,
    Process,
    RunConfig,
    build_config,
    config_from_dict,
    fit,
    run_payload,
    start_process,
    unwrap,
)

# Per-model defaults that differ from ClassifierConfig's.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "fastnet": {"epochs": 10, "lr": 0.2, "batch_size": 256},
    "fastnet_tiny": {"epochs": 2, "lr": 0.2, "batch_size": 128},
    "vgg19": {"lr": 0.1},
    "cloudnet_s": {"epochs": 10, "crop_padding": 2, "whiten": True,
                   "view_averaged_eval": True},
    "cloudnet_m": {"epochs": 16, "crop_padding": 2, "whiten": True,
                   "view_averaged_eval": True},
    "cloudnet_l": {"epochs": 24, "crop_padding": 2, "cutout": 8, "whiten": True,
                   "view_averaged_eval": True},
    "resnet50": {"lr": 0.1},
}


@dataclass
class ClassifierConfig(RunConfig):
    model: str = "fastnet"
    out: str = "runs/classifier"
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    warmup_fraction: float = 0.2
    compile: bool = False
    whiten: bool = False
    view_averaged_eval: bool = False
    cutout: int = 0  # the side of a square hidden in each training image (0: none)

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, cutout=0)


def make_config(model: str, **overrides: Any) -> ClassifierConfig:
    """The model's defaults, then overrides (None means 'keep the default')."""
    return build_config(ClassifierConfig, {"model": model, **MODEL_DEFAULTS.get(model, {})},
                        overrides)


def one_cycle(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float
              ) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def whiten_stem(stem: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Make `stem` (k x k, 2 * 3k^2 outputs) a fixed whitening of `images`' k x k patches: each
    eigenvector of their covariance, scaled by 1 / sqrt(eigenvalue + eps), and its negative.
    Its weight stops learning; its bias still does. `images` are what the stem sees."""
    k = stem.kernel_size[0]
    dims = images.shape[1] * k * k
    if stem.kernel_size != (k, k) or stem.out_channels != 2 * dims:
        raise ValueError(f"a whitened stem needs {2 * dims} outputs of {k}x{k}, got "
                         f"{stem.out_channels} of {stem.kernel_size}")
    patches = nn.functional.unfold(images.double(), k).transpose(1, 2).reshape(-1, dims)
    patches = patches - patches.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    filters = (eigenvectors / (eigenvalues + eps).sqrt()).T.reshape(dims, -1, k, k)
    with torch.no_grad():
        stem.weight.copy_(torch.cat([filters, -filters]).to(stem.weight.dtype))
    stem.weight.requires_grad_(False)


def _whiten(model: nn.Module, images: torch.Tensor) -> None:
    """Whiten the first convolution of a veil `Classifier` on the normalised `images`."""
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        whiten_stem(stem, model.normalize(images.float().div(255)))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, config: ClassifierConfig) -> torch.optim.SGD:
    """Nesterov SGD, no weight decay on BatchNorm weights and biases."""
    return torch.optim.SGD(param_groups(model, config.weight_decay), lr=config.lr,
                           momentum=config.momentum, nesterov=True)


def classifier_step(step_model: nn.Module, criterion: nn.Module,
                    optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """One training step on (x, y); returns (loss, logits), both detached."""
    with autocast(x.device, precision):
        logits = step_model(x)
        loss = criterion(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.detach()


def train_classifier(config: ClassifierConfig, resume: bool = False, quiet: bool | None = None,
                     on_epoch_end: Callable[[dict[str, Any]], None] | None = None
                     ) -> dict[str, Any]:
    """Train; returns the final metrics row. `on_epoch_end(row)` is called after each epoch's
    checkpoint is written (logging, early stops: whatever it raises ends the run, resumable)."""
    quiet = quiet_default() if quiet is None else quiet
    if model_kind(config.model) != "classifier":
        raise ValueError(f"{config.model!r} is not a classifier")
    process = start_process(config, resume)
    return fit(ClassifierTrainer(config, process), process, config, resume, quiet, on_epoch_end)


class ClassifierTrainer:
    """A zoo classifier on plain images (a `common.EpochTrainer`); DDP under torchrun."""

    def __init__(self, config: ClassifierConfig, process: Process, ds: Dataset | None = None
                 ) -> None:
        self.config, self.device, self.ddp = config, process.device, process.ddp
        if ds is None:
            ds = load_dataset(config.data, image_size=config.image_size).subset(
                config.train_subset, config.test_subset, config.seed)
        self.ds = ds
        seed_everything(config.seed)
        model = create_model(config.model, num_classes=len(ds.classes)).to(self.device)
        if config.whiten:  # from a fixed, seeded sample of the training images
            _whiten(model, to_tensor_images(ds.train.subset(5000, config.seed).images,
                                            self.device))
        self.model = model.to(memory_format=torch.channels_last) if config.channels_last else model
        self.train_loader = TensorLoader(ds.train, config.batch_size, shuffle=True,
                                         crop_padding=config.crop_padding, flip=config.flip,
                                         cutout=config.cutout,
                                         drop_last=len(ds.train) >= 2 * config.batch_size,
                                         seed=config.seed, device=self.device,
                                         channels_last=config.channels_last)
        self.test_loader = TensorLoader(ds.test, 1024, device=self.device,
                                        channels_last=config.channels_last)
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = one_cycle(self.optimizer, config.epochs * len(self.train_loader),
                                   config.warmup_fraction)
        wrapped = self.ddp.wrap(self.model)
        self.step_model = torch.compile(wrapped) if config.compile else wrapped
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.epoch = 0

    def warm_start(self, quiet: bool) -> None:
        return None

    def train_one_epoch(self, epoch: int, quiet: bool) -> dict[str, Any]:
        self.epoch = epoch
        return train_one_epoch(self.step_model, self.model, self.criterion, self.optimizer,
                               self.scheduler, self.train_loader, self.ddp, self.config, epoch,
                               quiet)

    def evaluate(self) -> dict[str, Any]:
        row = {"test_acc": accuracy(self.model, self.test_loader, self.config.precision),
               "lr": self.scheduler.get_last_lr()[0]}
        if self.config.view_averaged_eval and self.epoch == self.config.epochs:
            views = ViewAveraged(unwrap(self.model).backbone, len(self.ds.classes))
            row["test_acc_views"] = accuracy(views, self.test_loader, self.config.precision)
        return row

    def payload(self, row: dict[str, Any]) -> dict[str, Any]:
        return run_payload("classifier", self.config, row, self.ds,
                           model_name=self.config.model, num_classes=len(self.ds.classes),
                           model=unwrap(self.model).state_dict())

    def resume_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def format_row(self, row: dict[str, Any]) -> str:
        views = (f"  (six views {row['test_acc_views']:.2%})" if "test_acc_views" in row
                 else "")
        return (f"epoch {row['epoch']}: loss {row['loss']:.3f}  train {row['train_acc']:.2%}  "
                f"test {row['test_acc']:.2%}{views}  {row['images_per_s']:.0f} img/s  "
                f"{row['wall_s']:.0f}s")


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
        loss, logits = classifier_step(step_model, criterion, optimizer, x, y, config.precision)
        scheduler.step()
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    elapsed = time.perf_counter() - t0
    totals = ddp.all_sum(torch.stack([loss_sum, correct, torch.tensor(float(seen),
                                                                      device=device)]))
    return {"loss": totals[0].item() / totals[2].item(),
            "train_acc": totals[1].item() / totals[2].item(),
            "images_per_s": totals[2].item() / elapsed, "seconds": elapsed}


def config_from_checkpoint(payload: dict[str, Any]) -> ClassifierConfig:
    return config_from_dict(ClassifierConfig, payload["config"])
