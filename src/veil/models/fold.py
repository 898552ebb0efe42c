"""BatchNorm folding for networks that no longer learn (a frozen classifier, an export).

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
from torch.nn.utils.fusion import fuse_conv_bn_eval


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
        at = i - 1
        if isinstance(children[at], nn.MaxPool2d) and i >= 2 and _scales_positive(bn):
            at = i - 2
        conv = children[at]
        if isinstance(conv, nn.Conv2d) and conv.out_channels == bn.num_features:
            seq[at] = fuse_conv_bn_eval(conv, bn)
            seq[i] = nn.Identity()


def _scales_positive(bn: nn.BatchNorm2d) -> bool:
    """Whether every channel's affine map is increasing (then it commutes with a max pool)."""
    gamma = bn.weight if bn.affine else torch.ones_like(bn.running_var)
    return bool((gamma / torch.sqrt(bn.running_var + bn.eps) > 0).all())
