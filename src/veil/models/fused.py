"""BatchNorm + LeakyReLU as one autograd op that keeps only its output for the backward pass.

The obfuscator's every layer is conv -> BatchNorm -> LeakyReLU. Run as two layers, autograd keeps
two tensors of each layer's full size: the BatchNorm's input (for its backward) and the
LeakyReLU's output (for its own backward, and as the next convolution's input). Both the
LeakyReLU (slope > 0) and the BatchNorm's affine map (weight != 0) are invertible, so the output
alone determines the input; InPlace-ABN (Rota Bulò et al., CVPR 2018) uses this to keep one tensor
instead of two. The backward pass rebuilds the BatchNorm's input from the output and then runs
PyTorch's own BatchNorm and LeakyReLU backward kernels on it.

`fuse_batchnorm_leakyrelu(model)` swaps the pattern in place inside a model without renaming any
parameter or buffer, so checkpoints load either way. Evaluation mode runs the plain layers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class _BatchNormLeakyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                momentum: float, eps: float, slope: float) -> torch.Tensor:
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var,
                                                  True, momentum, eps)
        F.leaky_relu_(y, slope)
        ctx.save_for_backward(y, weight, bias, mean, invstd)
        ctx.slope, ctx.eps = slope, eps
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor):
        y, weight, bias, mean, invstd = ctx.saved_tensors
        grad_z = torch.ops.aten.leaky_relu_backward(grad_y, y, ctx.slope, True)
        x = _batchnorm_input(y, weight, bias, mean, invstd, ctx.slope)
        grad_x, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_z, x, weight, None, None, mean, invstd, True, ctx.eps,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]])
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


def _batchnorm_input(y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                     mean: torch.Tensor, invstd: torch.Tensor, slope: float) -> torch.Tensor:
    """x from y = leaky_relu((x - mean) * invstd * weight + bias), per channel (dim 1), in two
    passes: LeakyReLU with slope 1/slope inverts it, then one multiply-add undoes the affine."""
    shape = (1, -1) + (1,) * (y.dim() - 2)
    inverse_scale = 1 / (weight * invstd)
    offset = mean - bias * inverse_scale
    return torch.addcmul(offset.view(shape), F.leaky_relu(y, 1 / slope), inverse_scale.view(shape))


class BatchNormLeakyReLU(nn.BatchNorm2d):
    """nn.BatchNorm2d followed by LeakyReLU(slope): in training, one op that keeps one tensor
    (see the module's docstring); in evaluation, the two plain layers. Same parameters and
    buffers as the BatchNorm it replaces. Training needs a nonzero weight in every channel (a
    zero weight makes the input unrecoverable and its gradients NaN)."""

    def __init__(self, num_features: int, slope: float, **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        self.slope = slope

    @classmethod
    def replacing(cls, bn: nn.BatchNorm2d, slope: float) -> BatchNormLeakyReLU:
        if not (bn.affine and bn.track_running_stats and bn.momentum is not None):
            raise ValueError("only affine BatchNorms with running statistics and a momentum "
                             "are fused")
        fused = cls(bn.num_features, slope, eps=bn.eps, momentum=bn.momentum)
        fused.weight, fused.bias = bn.weight, bn.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(fused, name, getattr(bn, name))
        return fused.train(bn.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.leaky_relu(super().forward(x), self.slope)
        self.num_batches_tracked.add_(1)
        return _BatchNormLeakyReLU.apply(x, self.weight, self.bias, self.running_mean,
                                         self.running_var, self.momentum, self.eps, self.slope)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, slope={self.slope}"


def fuse_batchnorm_leakyrelu(model: nn.Module) -> int:
    """Replace every BatchNorm2d directly followed by a LeakyReLU inside an nn.Sequential of
    `model` with one BatchNormLeakyReLU (the LeakyReLU becomes an Identity, so state_dict keys
    stay as they were). Returns how many pairs were fused."""
    fused = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            bn, act = seq[i], seq[i + 1]
            if type(bn) is nn.BatchNorm2d and isinstance(act, nn.LeakyReLU):
                seq[i] = BatchNormLeakyReLU.replacing(bn, act.negative_slope)
                seq[i + 1] = nn.Identity()
                fused += 1
    return fused
