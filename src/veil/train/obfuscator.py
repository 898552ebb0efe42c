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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.checkpoint import load_checkpoint, save_checkpoint
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
from ..models import FrozenClassifier, create_model
from ..models.checkpoints import load_classifier
from .adversarial import AdversarialStep, evaluate_pair, make_schedulers
from .curve import LearningCurve
from .recipes import DEFAULT_RECIPE, RECIPES, ObfuscatorConfig, make_config
from .runs import MetricsLog, prepare_run_dir, write_config
from .warm_start import (
    EncoderClassifier,
    pretrain_encoder,
    pretrain_utility,
    repeat_batches,
)

__all__ = ["DEFAULT_RECIPE", "RECIPES", "AdversarialStep", "ObfuscatorConfig", "evaluate_pair",
           "format_row", "lambda_at", "make_config", "make_schedulers", "pretrain_identity",
           "train_obfuscator", "train_one_epoch"]

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


def train_obfuscator(config: ObfuscatorConfig, resume: bool = False, quiet: bool | None = None,
                     on_epoch_end: Callable[[dict[str, Any]], None] | None = None
                     ) -> dict[str, Any]:
    """Train; returns the final metrics row. `on_epoch_end(row)` is called after each epoch's
    checkpoint is written (logging, early stops: whatever it raises ends the run, resumable)."""
    quiet = quiet_default() if quiet is None else quiet
    if not config.classifier:
        raise ValueError("a trained classifier checkpoint is required (--classifier PATH)")
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    configure_backends(device)
    out = prepare_run_dir(config.out, resume)
    run = _set_up(config, device, out)
    start_epoch = 1
    if resume and (out / "last.pt").exists():
        start_epoch = _resume(run, out / "last.pt", device) + 1
    else:
        write_config(out, config)
        if _has_warm_start(config):
            run.log.append(_warm_start(config, run.obfuscator, run.step.classifier, run.ds,
                                       device, quiet, run.curve))
    previous = run.log.read()
    wall = previous[-1]["wall_s"] if previous else 0.0
    row: dict[str, Any] = previous[-1] if previous else {}
    for epoch in range(start_epoch, config.epochs + 1):
        stats = train_one_epoch(run, config, epoch, quiet)
        wall += stats.pop("seconds")
        metrics = evaluate_pair(run.obfuscator, run.deobfuscator, run.step.classifier,
                                run.test_loader, device, config.precision)
        row = {"epoch": epoch, **stats, **metrics, "wall_s": round(wall, 2)}
        run.log.append(row)
        save_checkpoint(_last_payload(run, config, row, epoch), out / "last.pt")
        if not quiet:
            print(format_row(row), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(row)
    save_checkpoint(_payload(run.obfuscator, run.deobfuscator, config, row, run.ds,
                             run.clf_info), out / "model.pt")
    return row


@dataclass
class _Run:
    """One obfuscator run's networks, data, optimisers and logs."""

    ds: Any
    obfuscator: nn.Module
    deobfuscator: nn.Module
    step: AdversarialStep
    loader: TensorLoader
    test_loader: TensorLoader
    schedulers: list
    log: MetricsLog
    curve: LearningCurve
    clf_info: dict[str, Any]


def _set_up(config: ObfuscatorConfig, device: torch.device, out: Path) -> _Run:
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
    curve = LearningCurve(out / "curve.jsonl", config.curve_every, obfuscator, step.classifier,
                          TensorLoader(ds.test.subset(config.curve_images, config.seed), 500,
                                       device=device, channels_last=config.channels_last))
    clf_info = {"model_name": clf_payload["model_name"], "path": str(config.classifier),
                "sha256": sha256_of(config.classifier),
                "test_acc": clf_payload.get("metrics", {}).get("test_acc")}
    return _Run(ds, obfuscator, deobfuscator, step, loader, test_loader,
                make_schedulers(step, config, len(loader)), MetricsLog(out / "metrics.jsonl"),
                curve, clf_info)


def _resume(run: _Run, last: Path, device: torch.device) -> int:
    """Restore networks, optimisers and schedules from last.pt; returns its epoch."""
    state = load_checkpoint(last, map_location=device)
    run.obfuscator.load_state_dict(state["obfuscator"])
    run.deobfuscator.load_state_dict(state["deobfuscator"])
    run.step.opt_obfuscator.load_state_dict(state["opt_obfuscator"])
    run.step.opt_deobfuscator.load_state_dict(state["opt_deobfuscator"])
    for s, s_state in zip(run.schedulers, state["schedulers"], strict=True):
        s.load_state_dict(s_state)
    run.log.truncate_after(state["epoch"])
    return state["epoch"]


def train_one_epoch(run: _Run, config: ObfuscatorConfig, epoch: int, quiet: bool
                    ) -> dict[str, Any]:
    """One pass over the training split: adversarial steps, λ ramped in, schedules stepped."""
    run.loader.set_epoch(epoch)
    run.obfuscator.train()
    run.deobfuscator.train()
    sums = torch.zeros(3, device=run.step.device)
    seen, lam = 0, config.lam
    t0 = time.perf_counter()
    run.curve.phase = "adversarial"
    bar = progress(run.loader, len(run.loader), f"epoch {epoch}/{config.epochs}", quiet)
    for i, (x, y) in enumerate(bar):
        lam = lambda_at(config, epoch - 1 + i / len(run.loader))
        out_step = run.step(x, y, lam)
        for s in run.schedulers:
            s.step()
        sums += torch.stack([out_step["loss_c"].float() * len(y),
                             out_step["loss_r"].float() * len(y), out_step["correct"].float()])
        seen += len(y)
        run.curve.on_step(len(y))
    elapsed = time.perf_counter() - t0
    return {"loss_c": sums[0].item() / seen, "loss_r": sums[1].item() / seen,
            "train_obfuscated_acc": sums[2].item() / seen, "lambda": lam,
            "images_per_s": seen / elapsed, "seconds": elapsed}


def _last_payload(run: _Run, config: ObfuscatorConfig, row: dict[str, Any], epoch: int
                  ) -> dict[str, Any]:
    payload = _payload(run.obfuscator, run.deobfuscator, config, row, run.ds, run.clf_info)
    payload.update(opt_obfuscator=run.step.opt_obfuscator.state_dict(),
                   opt_deobfuscator=run.step.opt_deobfuscator.state_dict(),
                   schedulers=[s.state_dict() for s in run.schedulers], epoch=epoch)
    return payload


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
