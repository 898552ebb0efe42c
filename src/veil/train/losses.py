"""The losses of obfuscator training, in one place: what the obfuscator minimises for the
classifier's sake (`utility_loss`: cross-entropy, distillation, the dense feature target) and the
gradient reversal through which it maximises its adversaries' losses (the deobfuscator's
reconstruction, the co-trained matcher's linkage)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class GradientReversal(torch.autograd.Function):
    """The identity forward; backward, the gradient times -scale: the network before it
    ascends what the network after it descends."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float
                 ) -> torch.Tensor:
    """KL divergence between softened distributions, scaled by T^2 (Hinton et al.)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1),
                    log_target=True, reduction="batchmean") * t * t


def feature_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE between feature vectors, normalised by the teacher's mean square (scale-free)."""
    student, teacher = student.float().flatten(1), teacher.float().flatten(1)
    return F.mse_loss(student, teacher) / teacher.pow(2).mean().clamp_min(1e-8)


def utility_loss(logits: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None,
                 distill: float, temperature: float, features: torch.Tensor | None = None,
                 teacher_features: torch.Tensor | None = None, feature_weight: float = 0.0
                 ) -> torch.Tensor:
    """CE + distill * KD(teacher) + feature_weight * feature distance: what the obfuscator
    minimises for the classifier's sake."""
    loss = F.cross_entropy(logits.float(), y)
    if distill > 0 and teacher_logits is not None:
        loss = loss + distill * distillation(logits.float(), teacher_logits.float(), temperature)
    if feature_weight > 0 and features is not None and teacher_features is not None:
        loss = loss + feature_weight * feature_distance(features, teacher_features)
    return loss
