"""BatchNorm folding for networks that no longer learn.

A BatchNorm2d in eval mode is a per-channel affine map, so when it directly follows a Conv2d it can
be folded into that convolution's weights and bias. It can also be moved across a max pool that
sits between them when every channel's scale is positive (max commutes with an increasing affine
map), which is the layout of airbench-style networks (conv -> pool -> BN). Folding removes the
BatchNorm's forward and backward passes from every step that runs through a frozen classifier.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every foldable BatchNorm2d folded into its convolution.

    The copy computes the same function in eval mode (up to float rounding); `model` is unchanged.
    BatchNorms that cannot be folded (no preceding conv, or a max pool with a negative scale in
    between) are kept as they are.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
    return folded


def _fold_sequential(seq: nn.Sequential) -> None:
    children = list(seq)
    for i, bn in enumerate(children):
        if not isinstance(bn, nn.BatchNorm2d) or i == 0:
            continue
        conv = children[i - 1]
        if isinstance(conv, nn.MaxPool2d) and i >= 2 and bool((_scale(bn) > 0).all()):
            conv = children[i - 2]
        if isinstance(conv, nn.Conv2d) and conv.out_channels == bn.num_features:
            _fold_into(conv, bn)
            seq[i] = nn.Identity()


def _scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
    return gamma / torch.sqrt(bn.running_var + bn.eps)


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = _scale(bn)
    shift = (bn.bias if bn.affine else torch.zeros_like(scale)) - bn.running_mean * scale
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    bias = conv.bias * scale + shift if conv.bias is not None else shift
    conv.bias = nn.Parameter(bias.clone(), requires_grad=conv.weight.requires_grad)
