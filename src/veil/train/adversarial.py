"""One adversarial step (obfuscator against deobfuscator, through the frozen classifier), its
learning-rate schedules, and the pair's evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..batches import accuracy
from ..core.eightbit import quantize_8bit, quantize_8bit_ste
from ..core.runtime import autocast
from ..data import TensorLoader
from ..metrics import psnr, ssim
from ..models import FrozenClassifier
from .engine import Distributed
from .recipes import ObfuscatorConfig
from .warm_start import utility_loss


class GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


class AdversarialStep:
    """One training step of obfuscator and deobfuscator against a frozen classifier, or against
    an ensemble of them (a list): `ensemble_mode` "mean" averages the members' classification
    losses in every step, "cycle" takes one member per step in turn (the cost of one)."""

    def __init__(self, obfuscator: nn.Module, deobfuscator: nn.Module,
                 classifier: nn.Module | Sequence[nn.Module], config: ObfuscatorConfig,
                 device: torch.device, fold: bool = True, ddp: Distributed | None = None) -> None:
        self.obfuscator, self.deobfuscator, self.ddp = obfuscator, deobfuscator, ddp
        members = list(classifier) if isinstance(classifier, Sequence) else [classifier]
        self.members = [FrozenClassifier(m, fold=fold) for m in members]
        self.classifier = self.members[0]  # the one the warm starts and the metrics use
        if config.ensemble_mode not in ("mean", "cycle"):
            raise ValueError(f"ensemble_mode must be mean or cycle, got "
                             f"{config.ensemble_mode!r}")
        self.steps = 0
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
        if self.ddp is not None:
            self.ddp.average_gradients(self.obfuscator, self.deobfuscator)
        self.opt_obfuscator.step()
        self.opt_deobfuscator.step()
        loss_c = F.cross_entropy(logits.detach().float(), y)
        correct = (logits.argmax(1) == y).sum()
        return {"loss_c": loss_c, "loss_r": loss_r.detach(), "correct": correct}

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
