"""`veil train obfuscator`: the paper's adversarial training of obfuscator and deobfuscator.

Given a frozen classifier f, the obfuscator O and the deobfuscator D are trained in the same steps:

    L_c = CE(f(q(O(x))), y)          q = 8-bit quantisation, straight-through
    L_r = MSE(D(q(O(x))), x)
    O minimises L_c - lambda * L_r,  D minimises L_r.

One backward pass serves both: D's input passes a gradient-reversal layer scaled by lambda, so D's
parameters receive dL_r and O's receive dL_c - lambda * dL_r. The two optimisers hold disjoint
parameter sets and the classifier's weights are frozen.

Recipes:
  * `paper`: Appendix A exactly: Adam, lr 1e-3, 100 epochs, lr / 10 every 30 epochs, horizontal
    flips only, the loss above.
  * `fast`: for limited compute. The classification term also distils the frozen classifier's
    own outputs on the plain image (KL at temperature T), the privacy term is ramped in over a
    warm-up, and the learning rate follows a one-cycle schedule; crop + flip augmentation.
    Optionally (`identity_epochs`) the obfuscator first learns to reproduce its input, so that
    the adversarial phase starts from an image the classifier can already read.
  * `staged` (the default): for one CPU hour. A cheap warm start first (`warm_start.py`): the
    encoder alone as a classifier (`encoder_epochs`; optionally then the whole obfuscator for the
    classifier alone, `utility_epochs`, no deobfuscator); then the adversarial phase at batch 32
    (4x the updates per image of batch 128, which learned faster per image on the CPU), with the
    frozen classifier's penultimate features on the plain image as a dense target
    (`feature_weight`) beside CE and distillation.

`curve_every` logs obfuscated accuracy on a fixed test slice against training wall time
(`curve.jsonl`; evaluation time excluded), across all stages.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checkpoint import load_checkpoint, save_checkpoint
from ..core.eightbit import quantize_8bit, quantize_8bit_ste
from ..core.files import sha256_of
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
from ..metrics import psnr, ssim
from ..models import FrozenClassifier, create_model
from ..models.checkpoints import load_classifier
from .curve import LearningCurve
from .runs import MetricsLog, prepare_run_dir, write_config
from .warm_start import (
    EncoderClassifier,
    pretrain_encoder,
    pretrain_utility,
    repeat_batches,
    utility_loss,
)

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
class ObfuscatorConfig:
    classifier: str = ""
    data: str | None = None
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
    crop_padding: int = 4
    flip: bool = True
    quantize: bool = True
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = True
    train_subset: int | None = None
    test_subset: int | None = None
    threads: int | None = None


def make_config(recipe: str = "fast", **overrides: Any) -> ObfuscatorConfig:
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    values = {"recipe": recipe, **RECIPES[recipe]}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return ObfuscatorConfig(**values)


class GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


class AdversarialStep:
    """One training step of obfuscator and deobfuscator against a frozen classifier."""

    def __init__(self, obfuscator: nn.Module, deobfuscator: nn.Module, classifier: nn.Module,
                 config: ObfuscatorConfig, device: torch.device, fold: bool = True) -> None:
        self.obfuscator, self.deobfuscator = obfuscator, deobfuscator
        self.classifier = FrozenClassifier(classifier, fold=fold)
        self.config, self.device = config, device
        self.opt_obfuscator = torch.optim.Adam(obfuscator.parameters(), lr=config.lr,
                                               fused=True)
        self.opt_deobfuscator = torch.optim.Adam(deobfuscator.parameters(),
                                                 lr=config.lr_deobfuscator, fused=True)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lam: float) -> dict[str, torch.Tensor]:
        cfg = self.config
        with autocast(self.device, cfg.precision):
            obfuscated = self.obfuscator(x)
            sent = quantize_8bit_ste(obfuscated) if cfg.quantize else obfuscated
            logits, loss_obf_c = self._utility(x, sent, y)
            rebuilt = self.deobfuscator(GradientReversal.apply(sent, lam))
            loss_r = F.mse_loss(rebuilt.float(), x)
        self.opt_obfuscator.zero_grad(set_to_none=True)
        self.opt_deobfuscator.zero_grad(set_to_none=True)
        (loss_obf_c + loss_r).backward()
        self.opt_obfuscator.step()
        self.opt_deobfuscator.step()
        loss_c = F.cross_entropy(logits.detach().float(), y)
        correct = (logits.argmax(1) == y).sum()
        return {"loss_c": loss_c, "loss_r": loss_r.detach(), "correct": correct}

    def _utility(self, x: torch.Tensor, sent: torch.Tensor, y: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits on the sent image, the obfuscator's classification loss)."""
        cfg = self.config
        if cfg.feature_weight > 0:
            with torch.no_grad():
                teacher, teacher_features = self.classifier.forward_with_features(x)
            logits, features = self.classifier.forward_with_features(sent)
            return logits, utility_loss(logits, y, teacher, cfg.distill, cfg.temperature,
                                        features, teacher_features, cfg.feature_weight)
        teacher = None
        if cfg.distill > 0:
            with torch.no_grad():
                teacher = self.classifier(x)
        logits = self.classifier(sent)
        return logits, utility_loss(logits, y, teacher, cfg.distill, cfg.temperature)


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


def lambda_at(config: ObfuscatorConfig, epoch_progress: float) -> float:
    """lambda ramped linearly from 0 over the first warmup_epochs (epoch_progress from 0)."""
    if config.warmup_epochs <= 0:
        return config.lam
    return config.lam * min(1.0, epoch_progress / config.warmup_epochs)


def make_schedulers(step: AdversarialStep, config: ObfuscatorConfig, steps_per_epoch: int
                    ) -> list[torch.optim.lr_scheduler.LRScheduler]:
    optimizers = (step.opt_obfuscator, step.opt_deobfuscator)
    total = config.epochs * steps_per_epoch
    if config.schedule == "step":
        every = max(1, config.step_epochs) * steps_per_epoch
        return [torch.optim.lr_scheduler.StepLR(o, every, 0.1) for o in optimizers]
    if config.schedule == "onecycle":
        return [torch.optim.lr_scheduler.OneCycleLR(o, o.param_groups[0]["lr"], total_steps=total,
                                                    pct_start=0.15) for o in optimizers]
    if config.schedule == "constant":
        return [torch.optim.lr_scheduler.LambdaLR(o, lambda _: 1.0) for o in optimizers]
    raise ValueError(f"unknown schedule {config.schedule!r}; valid: step, onecycle, constant")


@torch.no_grad()
def evaluate_pair(obfuscator: nn.Module, deobfuscator: nn.Module, classifier: nn.Module,
                  loader: TensorLoader, device: torch.device, precision: str = "fp32"
                  ) -> dict[str, float]:
    """Plain and 8-bit obfuscated accuracy, and the deobfuscator's PSNR/SSIM on loader."""
    for m in (obfuscator, deobfuscator, classifier):
        m.eval()
    plain = obf = n = 0
    psnrs, ssims = [], []
    for x, y in loader:
        with autocast(device, precision):
            sent = quantize_8bit(obfuscator(x).float())
            plain += (classifier(x).argmax(1) == y).sum().item()
            obf += (classifier(sent).argmax(1) == y).sum().item()
            rebuilt = deobfuscator(sent).float().clamp(0, 1)
        psnrs.append(psnr(rebuilt, x))
        ssims.append(ssim(rebuilt, x))
        n += len(y)
    return {"plain_acc": plain / n, "obfuscated_acc": obf / n,
            "deobfuscator_psnr": torch.cat(psnrs).mean().item(),
            "deobfuscator_ssim": torch.cat(ssims).mean().item()}


def train_obfuscator(config: ObfuscatorConfig, resume: bool = False, quiet: bool | None = None,
                     stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train; returns the final metrics row. `stop_after_epoch` simulates a killed run (tests)."""
    quiet = quiet_default() if quiet is None else quiet
    if not config.classifier:
        raise ValueError("a trained classifier checkpoint is required (--classifier PATH)")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    configure_backends(device)
    out = prepare_run_dir(config.out, resume)
    ds = load_dataset(config.data)
    classifier, clf_payload = load_classifier(config.classifier, device,
                                              expected_classes=ds.classes)
    ds = ds.subset(config.train_subset, config.test_subset, config.seed)
    ds.require_image_size()

    seed_everything(config.seed)
    obfuscator = create_model("obfuscator").to(device)
    deobfuscator = create_model("deobfuscator").to(device)
    if config.channels_last:
        for m in (obfuscator, deobfuscator, classifier):
            m.to(memory_format=torch.channels_last)
    step = AdversarialStep(obfuscator, deobfuscator, classifier, config, device)
    loader = TensorLoader(ds.train, config.batch_size, shuffle=True,
                          crop_padding=config.crop_padding, flip=config.flip,
                          drop_last=len(ds.train) >= 2 * config.batch_size, seed=config.seed,
                          device=device, channels_last=config.channels_last)
    test_loader = TensorLoader(ds.test, 500, device=device, channels_last=config.channels_last)
    schedulers = make_schedulers(step, config, len(loader))
    log = MetricsLog(out / "metrics.jsonl")
    curve = LearningCurve(out / "curve.jsonl", config.curve_every, obfuscator, step.classifier,
                          TensorLoader(ds.test.subset(config.curve_images, config.seed), 500,
                                       device=device, channels_last=config.channels_last))
    start_epoch = 1
    if resume and (out / "last.pt").exists():
        state = load_checkpoint(out / "last.pt", map_location=device)
        obfuscator.load_state_dict(state["obfuscator"])
        deobfuscator.load_state_dict(state["deobfuscator"])
        step.opt_obfuscator.load_state_dict(state["opt_obfuscator"])
        step.opt_deobfuscator.load_state_dict(state["opt_deobfuscator"])
        for s, s_state in zip(schedulers, state["schedulers"], strict=True):
            s.load_state_dict(s_state)
        start_epoch = state["epoch"] + 1
        log.truncate_after(state["epoch"])
    else:
        write_config(out, config)
        if _has_warm_start(config):
            log.append(_warm_start(config, obfuscator, step.classifier, ds, device, quiet,
                                   curve))
    clf_info = {"model_name": clf_payload["model_name"], "path": str(config.classifier),
                "sha256": sha256_of(config.classifier),
                "test_acc": clf_payload.get("metrics", {}).get("test_acc")}
    previous = log.read()
    wall = previous[-1]["wall_s"] if previous else 0.0
    row: dict[str, Any] = previous[-1] if previous else {}
    for epoch in range(start_epoch, config.epochs + 1):
        loader.set_epoch(epoch)
        obfuscator.train()
        deobfuscator.train()
        sums = torch.zeros(3, device=device)
        seen = 0
        t0 = time.perf_counter()
        curve.phase = "adversarial"
        bar = progress(loader, len(loader), f"epoch {epoch}/{config.epochs}", quiet)
        for i, (x, y) in enumerate(bar):
            lam = lambda_at(config, epoch - 1 + i / len(loader))
            out_step = step(x, y, lam)
            for s in schedulers:
                s.step()
            sums += torch.stack([out_step["loss_c"].float() * len(y),
                                 out_step["loss_r"].float() * len(y),
                                 out_step["correct"].float()])
            seen += len(y)
            curve.on_step(len(y))
        elapsed = time.perf_counter() - t0
        wall += elapsed
        metrics = evaluate_pair(obfuscator, deobfuscator, step.classifier, test_loader, device,
                                config.precision)
        row = {"epoch": epoch, "loss_c": sums[0].item() / seen, "loss_r": sums[1].item() / seen,
               "train_obfuscated_acc": sums[2].item() / seen, **metrics, "lambda": lam,
               "images_per_s": seen / elapsed, "wall_s": round(wall, 2)}
        log.append(row)
        payload = _payload(obfuscator, deobfuscator, config, row, ds, clf_info)
        payload.update(opt_obfuscator=step.opt_obfuscator.state_dict(),
                       opt_deobfuscator=step.opt_deobfuscator.state_dict(),
                       schedulers=[s.state_dict() for s in schedulers], epoch=epoch)
        save_checkpoint(payload, out / "last.pt")
        if not quiet:
            print(format_row(row), flush=True)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return row
    save_checkpoint(_payload(obfuscator, deobfuscator, config, row, ds, clf_info),
                    out / "model.pt")
    return row


def _has_warm_start(config: ObfuscatorConfig) -> bool:
    return max(config.identity_epochs, config.encoder_epochs, config.utility_epochs) > 0


def _warm_start(config: ObfuscatorConfig, obfuscator: nn.Module, classifier: FrozenClassifier,
                ds, device: torch.device, quiet: bool, curve: LearningCurve) -> dict[str, Any]:
    """The warm-start stages the config asks for, in order; their metrics row (epoch 0)."""
    loader = TensorLoader(ds.train, config.warm_start_batch_size, shuffle=True,
                          crop_padding=config.crop_padding, flip=config.flip,
                          drop_last=len(ds.train) >= 2 * config.warm_start_batch_size,
                          seed=config.seed + 1, device=device,
                          channels_last=config.channels_last)
    loader.set_epoch(0)
    row: dict[str, Any] = {"epoch": 0}
    t0 = time.perf_counter()
    common = {"device": device, "precision": config.precision, "quiet": quiet,
              "on_step": curve.on_step}
    if config.identity_epochs > 0:
        curve.phase = "identity"
        row["identity_mse"] = pretrain_identity(
            obfuscator, loader, round(config.identity_epochs * len(loader)), config.lr, device,
            config.precision, quiet)
    if config.encoder_epochs > 0:
        curve.phase = "encoder"
        curve.encoder_head = EncoderClassifier(obfuscator, len(ds.classes)).to(device)
        stats = pretrain_encoder(curve.encoder_head, classifier, loader,
                                 round(config.encoder_epochs * len(loader)),
                                 config.warm_start_lr, distill=config.distill,
                                 temperature=config.temperature, **common)
        curve.encoder_head = None
        row.update(encoder_loss=stats["loss"], encoder_train_acc=stats["train_acc"])
        row["encoder_s"] = round(time.perf_counter() - t0, 2)
    if config.utility_epochs > 0:
        curve.phase = "utility"
        stats = pretrain_utility(obfuscator, classifier, loader,
                                 round(config.utility_epochs * len(loader)),
                                 config.warm_start_lr, distill=config.distill,
                                 temperature=config.temperature,
                                 feature_weight=config.feature_weight,
                                 quantize=config.quantize, **common)
        row.update(utility_loss=stats["loss"], utility_train_acc=stats["train_acc"])
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    return row


def _payload(obfuscator: nn.Module, deobfuscator: nn.Module, config: ObfuscatorConfig,
             metrics: dict[str, Any], ds, clf_info: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "obfuscator", "obfuscator": obfuscator.state_dict(),
            "deobfuscator": deobfuscator.state_dict(), "classifier": clf_info,
            "classes": list(ds.classes), "config": asdict(config), "metrics": metrics,
            "data": {"name": ds.name, "sha256": ds.source_sha256},
            "environment": environment()}


def format_row(row: dict[str, Any]) -> str:
    return (f"epoch {row['epoch']}: L_c {row['loss_c']:.3f}  L_r {row['loss_r']:.4f}  "
            f"plain {row['plain_acc']:.2%}  obfuscated {row['obfuscated_acc']:.2%}  "
            f"deobf PSNR {row['deobfuscator_psnr']:.1f} dB SSIM {row['deobfuscator_ssim']:.3f}  "
            f"{row['images_per_s']:.0f} img/s")
