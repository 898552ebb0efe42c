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
    own outputs on the plain image (KL at temperature T), λ is ramped in over `lam_ramp_epochs`,
    and the learning rate follows a one-cycle schedule; crop + flip augmentation. Optionally
    (the `identity` warm-start stage) the obfuscator first learns to reproduce its input, so
    that the adversarial phase starts from an image the classifier can already read.
  * `staged` (the default): for one CPU hour. A cheap warm start first (`warm_start.py`): the
    encoder alone as a classifier (stage `encoder`; optionally then the whole obfuscator for the
    classifier alone, stage `utility`, no deobfuscator); then the adversarial phase at batch 32
    (4x the updates per image of batch 128, which learned faster per image on the CPU), with the
    frozen classifier's penultimate features on the plain image as a dense target
    (`feature_weight`) beside CE and distillation.

`curve_every` logs obfuscated accuracy on a fixed test slice against training wall time
(`curve.jsonl`; evaluation time excluded), across all stages.

Read top to bottom: the config and its recipes, one adversarial step with its schedules and the
pair's evaluation, then the trainer (`train_obfuscator`; warm starts from `warm_start.py`,
`train_one_epoch`, `evaluate`) that `common.fit` runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..batches import accuracy
from ..core.eightbit import quantize_8bit, quantize_8bit_ste
from ..core.runtime import autocast, progress, quiet_default, seed_everything
from ..core.settings import (
    at_least,
    one_of,
    positive,
    setting_names,
    unknown_setting,
    upgrade_names,
)
from ..data import TensorLoader, load_dataset
from ..metrics import psnr, ssim
from ..models import FrozenClassifier, create_model
from ..models.loading import load_obfuscator_pair
from ..models.matcher import Matcher
from ..models.obfuscator import scaled_channels
from ..run_inputs import load_ensemble, load_target
from .common import (
    WARM_START_PREFIX,
    Distributed,
    Process,
    RunConfig,
    fit,
    run_payload,
    start_process,
)
from .curve import LearningCurve
from .losses import GradientReversal, utility_loss
from .warm_start import StageSaver, run_warm_starts

# --- the config and its recipes ---------------------------------------------------------------
# the warm-start stages, in the order they run (train/warm_start.py)
WARM_START_STAGES = ("identity", "encoder", "utility")


@dataclass
class ObfuscatorConfig(RunConfig):
    """The settings of one obfuscator run; the defaults are the `staged` recipe: a cheap warm
    start of the encoder as a classifier, then one-cycle adversarial training at batch 32 with
    distillation and the classifier's penultimate features as a dense target (the embedded
    default was trained so, in under an hour of a 2-core CPU)."""

    classifier: str = ""  # a veil checkpoint, a .pt2 program or package.module:function
    classifier_weights: str | None = None  # the factory's state dict (weights_only=True)
    classifier_mean: list[float] | None = None  # the classifier's input normalisation
    classifier_std: list[float] | None = None
    ensemble: list[str] | None = None  # more frozen classifiers to train against (--classifier
    ensemble_mode: str = "mean"  # given again): "mean" of their losses, or "cycle" one a step
    out: str = "runs/obfuscator"
    recipe: str = "staged"  # the recipe these settings started from
    epochs: int = 6  # adversarial epochs
    batch_size: int = 32
    lr: float = 2e-3
    lr_deobfuscator: float = 2e-3
    schedule: str = "onecycle"  # "onecycle", "step" (lr / 10 every step_epochs) or "constant"
    step_epochs: int = 0
    lam: float = 1.0  # λ, the weight of the privacy term
    lam_ramp_epochs: float = 0.3  # λ rises linearly from 0 over these first adversarial epochs
    distill: float = 1.0  # weight of distilling the classifier's outputs on the plain image
    temperature: float = 4.0
    feature_weight: float = 1.0  # weight of the classifier's penultimate features as a target
    # the co-trained deobfuscator sees only this share of each (shuffled) batch: a cheaper step,
    # since the privacy that counts is measured afterwards by fresh attackers
    deobfuscator_fraction: float = 1.0
    # warm-start stage -> epochs, run in WARM_START_STAGES order before the adversarial phase:
    # "identity" (reproduce the input), "encoder" (the encoder alone as a classifier),
    # "utility" (the obfuscator for the classifier alone, no deobfuscator)
    warm_start: dict[str, float] = field(default_factory=lambda: {"encoder": 8.0})
    warm_start_lr: float = 3e-3
    warm_start_batch_size: int = 64
    curve_every: int = 0  # log obfuscated accuracy every N training images (0: off)
    curve_images: int = 1000
    quantize: bool = True  # 8-bit straight-through quantisation of the sent image
    # the obfuscator's width multiplier α (1: the paper's network); the co-trained
    # deobfuscator stays at full width, since the device's budget does not bind the attacker
    width: float = 1.0
    # randomness per request inside the network: the std of fresh Gaussian noise added to the
    # obfuscator's bottleneck on every call, in training and in use (0: deterministic)
    bottleneck_noise: float = 0.0
    # λ_l, the weight of the linkage term: a contrastive matcher (models.matcher, encoder width
    # link_width) is trained in the same steps to link each sent image to its photo among the
    # batch, and the obfuscator minimises L_c − λ·L_r − λ_l·L_link (0: no matcher)
    lam_link: float = 0.0
    link_width: int = 16
    # fine-tuning: start the obfuscator and deobfuscator from this obfuscator checkpoint (of the
    # same width) instead of random weights; then no warm-start stage runs
    init: str | None = None
    # a derived obfuscator: λ_a, the weight of a term that keeps whoever holds the `away_from`
    # obfuscator checkpoint (default: init, the parent) from linking what this one sends by
    # re-obfuscating candidate photos: among each batch, the parent's output nearest to a sent
    # image must be its own photo's no more often than by chance (0: off)
    lam_away: float = 0.0
    away_from: str | None = None

    RENAMED: ClassVar[dict[str, str]] = {
        "warmup_epochs": "lam_ramp_epochs", "identity_epochs": "warm_start.identity",
        "encoder_epochs": "warm_start.encoder", "utility_epochs": "warm_start.utility"}

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of(self, "schedule", ("onecycle", "step", "constant"))
        one_of(self, "ensemble_mode", ("mean", "cycle"))
        at_least(self, lam=0, lam_ramp_epochs=0, distill=0, feature_weight=0, step_epochs=0,
                 bottleneck_noise=0,
                 warm_start_batch_size=1, curve_every=0, curve_images=1, lam_link=0,
                 link_width=1, lam_away=0)
        if self.lam_away > 0 and not (self.away_from or self.init):
            raise ValueError(f"setting lam_away = {self.lam_away:g}: needs the parent to move "
                             "away from (setting away_from, or init)")
        positive(self, "lr_deobfuscator", "temperature", "warm_start_lr", "deobfuscator_fraction",
                 "width")
        scaled_channels(self.width)
        if self.deobfuscator_fraction > 1:
            raise ValueError(f"setting deobfuscator_fraction = {self.deobfuscator_fraction!r}: "
                             "a share of the batch, at most 1")
        unknown = [stage for stage in self.warm_start if stage not in WARM_START_STAGES]
        if unknown:
            raise ValueError(f"setting warm_start: unknown stage {unknown[0]!r} (stages: "
                             f"{', '.join(WARM_START_STAGES)})")
        if any(epochs < 0 for epochs in self.warm_start.values()):
            raise ValueError(f"setting warm_start = {self.warm_start}: epochs must be at least 0")
        # one spelling per meaning: stages in the order they run, a stage of 0 epochs left out
        self.warm_start = {stage: float(self.warm_start[stage]) for stage in WARM_START_STAGES
                           if self.warm_start.get(stage, 0) > 0}

    @classmethod
    def base_for(cls, data: dict[str, Any]) -> ObfuscatorConfig:
        """The recipe saved settings started from: what their old warm-start names merge over."""
        return RECIPES.get(data.get("recipe"), STAGED)

    def warm_start_epochs(self, stage: str) -> float:
        return self.warm_start.get(stage, 0.0)


STAGED = ObfuscatorConfig()
RECIPES: dict[str, ObfuscatorConfig] = {
    "staged": STAGED,
    # adversarial only, for limited compute. The λ = 0 utility stage is off in staged too: in
    # results/cpu/learning_speed it reached 58 % fast, but the adversarial phase then pulled it
    # back below the recipe without it.
    "fast": replace(STAGED, recipe="fast", epochs=4, batch_size=128, lam_ramp_epochs=0.5,
                    feature_weight=0.0, warm_start={}),
    # Appendix A exactly: Adam, lr 1e-3, 100 epochs, lr / 10 every 30, flips only, no extras
    "paper": replace(STAGED, recipe="paper", epochs=100, batch_size=128, lr=1e-3,
                     lr_deobfuscator=1e-3, schedule="step", step_epochs=30, crop_padding=0,
                     distill=0.0, lam_ramp_epochs=0.0, feature_weight=0.0, warm_start={}),
}
DEFAULT_RECIPE = STAGED.recipe


def make_config(recipe: str = DEFAULT_RECIPE, **overrides: Any) -> ObfuscatorConfig:
    """The recipe with `overrides` on top (None means 'keep the recipe's'); old setting names
    are read as the new ones, with a notice."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; valid: {', '.join(RECIPES)}")
    base = RECIPES[recipe]
    overrides = upgrade_names(ObfuscatorConfig, overrides, "the given settings", base=base)
    given = {k: v for k, v in overrides.items() if v is not None}
    for name in given:
        if name not in setting_names(ObfuscatorConfig):
            raise unknown_setting(ObfuscatorConfig, name, "make_config")
    return replace(base, **{"warm_start": dict(base.warm_start), **given})


# --- one adversarial step, its schedules and the pair's evaluation --------------------------
def away_loss(sent: torch.Tensor, parent_sent: torch.Tensor) -> torch.Tensor:
    """How much better than chance the parent's holder links the batch by re-obfuscation: with
    p_ii the softmax share of sent image i's own photo among the batch's re-obfuscated photos
    (by squared distance, at the temperature of the batch's median distance / 10), the mean of
    max(0, log p_ii + log N); zero once no photo is more likely its own than by chance."""
    n = len(sent)
    d = torch.cdist(sent.flatten(1).float(), parent_sent.flatten(1).float()).pow(2)
    tau = d.detach().median().clamp_min(1e-6) / 10
    log_p = F.log_softmax(-d / tau, dim=1).diagonal()
    return F.relu(log_p + math.log(n)).mean()


class AdversarialStep:
    """One training step of obfuscator and deobfuscator against a frozen classifier, or against
    an ensemble of them (a list): `ensemble_mode` "mean" averages the members' classification
    losses in every step, "cycle" takes one member per step in turn (the cost of one)."""

    def __init__(self, obfuscator: nn.Module, deobfuscator: nn.Module,
                 classifier: nn.Module | Sequence[nn.Module], config: ObfuscatorConfig,
                 device: torch.device, fold: bool = True, ddp: Distributed | None = None,
                 parent: nn.Module | None = None) -> None:
        self.obfuscator, self.deobfuscator, self.ddp = obfuscator, deobfuscator, ddp
        self.parent = parent  # frozen: the obfuscator a derived one moves away from
        members = list(classifier) if isinstance(classifier, Sequence) else [classifier]
        self.members = [FrozenClassifier(m, fold=fold) for m in members]
        self.classifier = self.members[0]  # the one the warm starts and the metrics use
        self.steps = 0
        self.config, self.device = config, device
        self.opt_obfuscator = torch.optim.Adam(obfuscator.parameters(), lr=config.lr,
                                               fused=True)
        self.opt_deobfuscator = torch.optim.Adam(deobfuscator.parameters(),
                                                 lr=config.lr_deobfuscator, fused=True)
        self.matcher: Matcher | None = None
        if config.lam_link > 0:  # the co-trained linkage adversary
            self.matcher = Matcher(config.link_width, config.seed).to(device)
            self.opt_matcher = torch.optim.Adam(self.matcher.parameters(),
                                                lr=config.lr_deobfuscator)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lam: float) -> dict[str, torch.Tensor]:
        cfg = self.config
        adversaries = [self.deobfuscator] + ([self.matcher] if self.matcher else [])
        with autocast(self.device, cfg.precision):
            obfuscated = self.obfuscator(x)
            sent = quantize_8bit_ste(obfuscated) if cfg.quantize else obfuscated
            logits, loss_obf_c = self._utility(x, sent, y)
            seen = self._deobfuscator_share(len(x))
            rebuilt = self.deobfuscator(GradientReversal.apply(sent[:seen], lam))
            loss_r = F.mse_loss(rebuilt.float(), x[:seen])
            loss_link = torch.zeros((), device=x.device)
            if self.matcher is not None:
                # λ_l ramps in with λ; the matcher descends L_link, the obfuscator ascends it
                scale = cfg.lam_link * (lam / cfg.lam if cfg.lam > 0 else 1.0)
                loss_link = self.matcher.loss(GradientReversal.apply(sent, scale), x).float()
            if self.parent is not None:  # the linkage terms share one logged loss
                loss_link = loss_link + cfg.lam_away * away_loss(sent, self._parent_sends(x))
        self.opt_obfuscator.zero_grad(set_to_none=True)
        for net in adversaries:
            net.zero_grad(set_to_none=True)
        (loss_obf_c + loss_r + loss_link).backward()
        if self.ddp is not None:
            self.ddp.average_gradients(self.obfuscator, *adversaries)
        self.opt_obfuscator.step()
        self.opt_deobfuscator.step()
        if self.matcher is not None:
            self.opt_matcher.step()
        loss_c = F.cross_entropy(logits.detach().float(), y)
        correct = (logits.argmax(1) == y).sum()
        return {"loss_c": loss_c, "loss_r": loss_r.detach(), "loss_link": loss_link.detach(),
                "correct": correct}

    @torch.no_grad()
    def _parent_sends(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_8bit(self.parent(x).float())

    def _deobfuscator_share(self, batch: int) -> int:
        """How many of the batch's images the deobfuscator sees (the loader shuffles, so the
        first ones are a random subset); at least 2, for its BatchNorms."""
        if self.config.deobfuscator_fraction >= 1:
            return batch
        return min(batch, max(2, math.ceil(self.config.deobfuscator_fraction * batch)))

    def _utility(self, x: torch.Tensor, sent: torch.Tensor, y: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits on the sent image, the obfuscator's classification loss) over the members
        this step uses (logits and loss averaged)."""
        if self.config.ensemble_mode == "cycle" or len(self.members) == 1:
            member = self.members[self.steps % len(self.members)]
            self.steps += 1
            return self._member_utility(member, x, sent, y)
        results = [self._member_utility(m, x, sent, y) for m in self.members]
        return (torch.stack([r[0].float() for r in results]).mean(0),
                torch.stack([r[1] for r in results]).mean())

    def _member_utility(self, classifier: FrozenClassifier, x: torch.Tensor, sent: torch.Tensor,
                        y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        if cfg.feature_weight > 0:
            with torch.no_grad():
                teacher, teacher_features = classifier.forward_with_features(x)
            logits, features = classifier.forward_with_features(sent)
            return logits, utility_loss(logits, y, teacher, cfg.distill, cfg.temperature,
                                        features, teacher_features, cfg.feature_weight)
        teacher = None
        if cfg.distill > 0:
            with torch.no_grad():
                teacher = classifier(x)
        logits = classifier(sent)
        return logits, utility_loss(logits, y, teacher, cfg.distill, cfg.temperature)


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
def member_accuracy(obfuscator: nn.Module, classifier: nn.Module, loader: TensorLoader,
                    precision: str = "fp32") -> dict[str, float]:
    """One classifier's plain and 8-bit obfuscated accuracy on loader."""
    obfuscator.eval()
    return {"plain_acc": accuracy(classifier, loader, precision),
            "obfuscated_acc": accuracy(classifier, loader, precision,
                                       transform=lambda x: quantize_8bit(obfuscator(x).float()))}


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


# --- the trainer -------------------------------------------------------------------------------
def lambda_at(config: ObfuscatorConfig, epoch_progress: float) -> float:
    """lambda ramped linearly from 0 over the first lam_ramp_epochs (epoch_progress from 0)."""
    if config.lam_ramp_epochs <= 0:
        return config.lam
    return config.lam * min(1.0, epoch_progress / config.lam_ramp_epochs)


def train_obfuscator(config: ObfuscatorConfig, resume: bool = False, quiet: bool | None = None,
                     on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
                     classifier: nn.Module | None = None) -> dict[str, Any]:
    """Train; returns the final metrics row. `on_epoch_end(row)` is called after each epoch's
    checkpoint is written (logging, early stops: whatever it raises ends the run, resumable).
    Under torchrun each process takes its share of every batch and the gradients are averaged.
    `classifier`: a module to train against instead of loading `config.classifier` (it is
    saved as OUT/classifier.pt2 for evaluation and serving)."""
    quiet = quiet_default() if quiet is None else quiet
    if not config.classifier and classifier is None:
        raise ValueError("a trained classifier is required (--classifier: a veil checkpoint, a "
                         ".pt2 program or package.module:function)")
    process = start_process(config, resume)
    trainer = ObfuscatorTrainer(config, process, classifier)
    return fit(trainer, process, config, resume, quiet, on_epoch_end)


class ObfuscatorTrainer:
    """The obfuscator pair against a frozen classifier (a `common.EpochTrainer`)."""

    def __init__(self, config: ObfuscatorConfig, process: Process,
                 classifier: nn.Module | None = None) -> None:
        self.config, self.device, self.ddp = config, process.device, process.ddp
        device = self.device
        ds = load_dataset(config.data, image_size=config.image_size)
        self.ds = ds = ds.subset(config.train_subset, config.test_subset, config.seed)
        ds.require_obfuscator_size()
        size = tuple(ds.train.images.shape[1:3])
        classifier, self.clf_info = load_target(
            config.classifier, ds.classes, size, device, process.out, module=classifier,
            weights=config.classifier_weights, mean=config.classifier_mean,
            std=config.classifier_std, is_main=process.ddp.is_main, barrier=process.ddp.barrier)
        members = [classifier, *load_ensemble(config.ensemble or [], ds.classes, size, device,
                                              self.clf_info)]
        seed_everything(config.seed)
        self.obfuscator = create_model("obfuscator", width=config.width,
                                       noise=config.bottleneck_noise).to(device)
        self.deobfuscator = create_model("deobfuscator").to(device)
        if config.init:
            _start_from(config, self.obfuscator, self.deobfuscator)
        if config.channels_last:
            for m in (self.obfuscator, self.deobfuscator, *members):
                m.to(memory_format=torch.channels_last)
        self.step = AdversarialStep(self.obfuscator, self.deobfuscator, members, config,
                                    device, ddp=self.ddp if self.ddp.enabled else None,
                                    parent=_parent(config, device))
        if config.feature_weight > 0 and any(m.head is None for m in self.step.members):
            raise ValueError(f"the feature target (feature_weight {config.feature_weight:g}, "
                             f"on in the {config.recipe!r} recipe) needs a classifier ending in "
                             "nn.Linear, which a torch.export program does not show: pass "
                             "--set feature_weight=0, or give the classifier as "
                             "package.module:function with --set classifier_weights=FILE")
        self.loader = TensorLoader(ds.train, config.batch_size, shuffle=True,
                                   crop_padding=config.crop_padding, flip=config.flip,
                                   drop_last=len(ds.train) >= 2 * config.batch_size,
                                   seed=config.seed, device=device,
                                   channels_last=config.channels_last)
        self.test_loader = TensorLoader(ds.test, 500, device=device,
                                        channels_last=config.channels_last)
        curve_every = config.curve_every if self.ddp.is_main else 0
        self.curve = LearningCurve(process.out / "curve.jsonl", curve_every, self.obfuscator,
                                   self.step.classifier,
                                   TensorLoader(ds.test.subset(config.curve_images, config.seed),
                                                500, device=device,
                                                channels_last=config.channels_last))
        self.schedulers = make_schedulers(self.step, config, len(self.loader))
        self.out, self.resuming = process.out, process.resume

    def warm_start(self, quiet: bool) -> dict[str, Any] | None:
        """The warm-start stages the config asks for. Under torchrun every rank runs them alike
        (same seed, same batches); rank 0's result is then given to all."""
        if not self.config.warm_start or self.config.init:
            return None
        row = run_warm_starts(self.config, self.obfuscator, self.step.classifier, self.ds,
                              self.device, quiet, self.curve, self._saver)
        self.ddp.broadcast(self.obfuscator)
        return row

    def _saver(self, stage: str, every: int) -> StageSaver:
        return StageSaver(self.out / f"{WARM_START_PREFIX}{stage}.pt", every,
                          self.curve.state_dict, self.curve.load_state_dict,
                          write=self.ddp.is_main, resume=self.resuming)

    def train_one_epoch(self, epoch: int, quiet: bool) -> dict[str, Any]:
        """One pass over the training split: adversarial steps on this rank's share of each
        batch, λ ramped in, schedules stepped; the statistics summed over the ranks."""
        config, ddp = self.config, self.ddp
        self.loader.set_epoch(epoch)
        self.obfuscator.train()
        self.deobfuscator.train()
        sums = torch.zeros(5, device=self.device)
        lam = config.lam
        t0 = time.perf_counter()
        self.curve.phase = "adversarial"
        bar = progress(self.loader, len(self.loader), f"epoch {epoch}/{config.epochs}", quiet)
        for i, (x, y) in enumerate(bar):
            lam = lambda_at(config, epoch - 1 + i / len(self.loader))
            batch = len(y)
            x, y = ddp.shard(x), ddp.shard(y)
            out = self.step(x, y, lam)
            for s in self.schedulers:
                s.step()
            sums += torch.stack([out["loss_c"].float() * len(y), out["loss_r"].float() * len(y),
                                 out["correct"].float(), sums.new_tensor(float(len(y))),
                                 out["loss_link"].float() * len(y)])
            self.curve.on_step(batch)
        elapsed = time.perf_counter() - t0
        ddp.broadcast(self.obfuscator, self.deobfuscator)  # one set of BatchNorm statistics
        loss_c, loss_r, correct, seen, loss_link = ddp.all_sum(sums).tolist()
        row = {"loss_c": loss_c / seen, "loss_r": loss_r / seen,
               "train_obfuscated_acc": correct / seen, "lambda": lam,
               "images_per_s": seen / elapsed, "seconds": elapsed}
        if self.step.matcher is not None:
            ddp.broadcast(self.step.matcher)
        if self.step.matcher is not None or self.step.parent is not None:
            row["loss_link"] = loss_link / seen
        return row

    def evaluate(self) -> dict[str, Any]:
        """The pair on the test split against the first classifier; for an ensemble also every
        member's plain and obfuscated accuracy (`members`)."""
        row = evaluate_pair(self.obfuscator, self.deobfuscator, self.step.classifier,
                            self.test_loader, self.device, self.config.precision)
        if len(self.step.members) > 1:
            first = {k: row[k] for k in ("plain_acc", "obfuscated_acc")}  # measured just now
            others = [member_accuracy(self.obfuscator, member, self.test_loader,
                                      self.config.precision) for member in self.step.members[1:]]
            row["members"] = [{"model_name": info["model_name"], "sha256": info["sha256"], **acc}
                              for info, acc in zip([self.clf_info, *self.clf_info["ensemble"]],
                                                   [first, *others], strict=True)]
        return row

    def payload(self, row: dict[str, Any]) -> dict[str, Any]:
        return run_payload("obfuscator", self.config, row, self.ds,
                           obfuscator=self.obfuscator.state_dict(),
                           deobfuscator=self.deobfuscator.state_dict(), classifier=self.clf_info)

    def resume_state(self) -> dict[str, Any]:
        state = {"opt_obfuscator": self.step.opt_obfuscator.state_dict(),
                 "opt_deobfuscator": self.step.opt_deobfuscator.state_dict(),
                 "schedulers": [s.state_dict() for s in self.schedulers],
                 "curve": self.curve.state_dict()}
        if self.step.matcher is not None:
            state["matcher"] = self.step.matcher.state_dict()
            state["opt_matcher"] = self.step.opt_matcher.state_dict()
        return state

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.obfuscator.load_state_dict(state["obfuscator"])
        self.deobfuscator.load_state_dict(state["deobfuscator"])
        self.step.opt_obfuscator.load_state_dict(state["opt_obfuscator"])
        self.step.opt_deobfuscator.load_state_dict(state["opt_deobfuscator"])
        for s, s_state in zip(self.schedulers, state["schedulers"], strict=True):
            s.load_state_dict(s_state)
        if "curve" in state:  # checkpoints written before the curve was resumable lack it
            self.curve.load_state_dict(state["curve"])
        if self.step.matcher is not None:
            self.step.matcher.load_state_dict(state["matcher"])
            self.step.opt_matcher.load_state_dict(state["opt_matcher"])

    def format_row(self, row: dict[str, Any]) -> str:
        return format_row(row)


def _start_from(config: ObfuscatorConfig, obfuscator: nn.Module, deobfuscator: nn.Module
                ) -> None:
    """Load the pair of the checkpoint `config.init` into the fresh pair (fine-tuning)."""
    start, start_deobfuscator, _ = load_obfuscator_pair(config.init)
    if start.width != config.width:
        raise ValueError(f"setting init = {config.init}: an obfuscator of width {start.width:g}, "
                         f"but this run's width is {config.width:g}")
    obfuscator.load_state_dict(start.state_dict())
    deobfuscator.load_state_dict(start_deobfuscator.state_dict())


def _parent(config: ObfuscatorConfig, device: torch.device) -> nn.Module | None:
    """The frozen obfuscator a derived one moves away from (None when lam_away is 0)."""
    if config.lam_away == 0:
        return None
    parent, _, _ = load_obfuscator_pair(config.away_from or config.init, device)
    return parent.eval().requires_grad_(False)


def format_row(row: dict[str, Any]) -> str:
    return (f"epoch {row['epoch']}: L_c {row['loss_c']:.3f}  L_r {row['loss_r']:.4f}  "
            f"plain {row['plain_acc']:.2%}  obfuscated {row['obfuscated_acc']:.2%}  "
            f"deobf PSNR {row['deobfuscator_psnr']:.1f} dB SSIM {row['deobfuscator_ssim']:.3f}  "
            f"{row['images_per_s']:.0f} img/s")
