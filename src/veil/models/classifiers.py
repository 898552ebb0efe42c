"""CIFAR-10 classifiers of the zoo.

The four paper classifiers follow the common CIFAR adaptations of VGG19 (with BatchNorm), ResNet18,
ResNet50 and GoogLeNet (3x3 stem, no initial down-sampling), whose sizes match the paper's overhead
columns. `resnet9` and `resnet9_narrow` are small, fast classifiers in the style of the fast
CIFAR-10 training recipes (the Myrtle ResNet-9), for CPU-scale experiments and the embedded default.
Every classifier takes images in [0, 1]; its normalisation travels with it as buffers.
"""

from __future__ import annotations

import torch
from torch import nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """(x - mean) / std per channel: veil's one input normalisation (its classifiers', and the
    one put in front of a classifier that was trained on normalised images)."""

    def __init__(self, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """A backbone that sees normalised images; callers pass images in [0, 1]."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.normalize = Normalize()
        self.backbone = backbone
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalize(x))


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


# --- VGG19 with BatchNorm -------------------------------------------------------------------
VGG19_LAYOUT = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def vgg19_backbone(num_classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG19_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, num_classes))


# --- ResNet ----------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            *conv_bn_relu(cin, width, 3, stride),
            nn.Conv2d(width, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class BottleneckBlock(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            *conv_bn_relu(cin, width, 1),
            *conv_bn_relu(width, width, 3, stride),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def resnet_backbone(block: type, depths: list[int], num_classes: int,
                    width: int = 64) -> nn.Module:
    widths = (width, 2 * width, 4 * width, 8 * width)
    layers: list[nn.Module] = conv_bn_relu(3, width)
    cin = width
    for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
        for i in range(depth):
            stride = 2 if stage > 0 and i == 0 else 1
            layers.append(block(cin, width, stride))
            cin = width * block.expansion
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(cin, num_classes))


# --- GoogLeNet -------------------------------------------------------------------------------
class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> None:
        super().__init__()
        self.b1 = nn.Sequential(*conv_bn_relu(cin, c1, 1))
        self.b3 = nn.Sequential(*conv_bn_relu(cin, c3r, 1), *conv_bn_relu(c3r, c3))
        # The "5x5" branch as two stacked 3x3 convs, as in the usual CIFAR GoogLeNet.
        self.b5 = nn.Sequential(*conv_bn_relu(cin, c5r, 1), *conv_bn_relu(c5r, c5),
                                *conv_bn_relu(c5, c5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), *conv_bn_relu(cin, pool, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


def _conv_relu_biased(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def googlenet_backbone(num_classes: int) -> nn.Module:
    return nn.Sequential(
        *_conv_relu_biased(3, 192),
        Inception(192, 64, 96, 128, 16, 32, 32),
        Inception(256, 128, 128, 192, 32, 96, 64),
        nn.MaxPool2d(3, 2, 1),
        Inception(480, 192, 96, 208, 16, 48, 64),
        Inception(512, 160, 112, 224, 24, 64, 64),
        Inception(512, 128, 128, 256, 24, 64, 64),
        Inception(512, 112, 144, 288, 32, 64, 64),
        Inception(528, 256, 160, 320, 32, 128, 128),
        nn.MaxPool2d(3, 2, 1),
        Inception(832, 256, 160, 320, 32, 128, 128),
        Inception(832, 384, 192, 384, 48, 128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, num_classes),
    )


# --- ResNet-9 (fast CIFAR recipe) ------------------------------------------------------------
class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(channels, channels),
                                  *conv_bn_relu(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def resnet9_backbone(num_classes: int, width: int = 64) -> nn.Module:
    w1, w2, w3, w4 = width, 2 * width, 4 * width, 8 * width
    return nn.Sequential(
        *conv_bn_relu(3, w1),
        *conv_bn_relu(w1, w2), nn.MaxPool2d(2), Residual(w2),
        *conv_bn_relu(w2, w3), nn.MaxPool2d(2),
        *conv_bn_relu(w3, w4), nn.MaxPool2d(2), Residual(w4),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(w4, num_classes, bias=False),
        _Scale(0.125),
    )


class _Scale(nn.Module):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


# --- FastNet: an airbench-style small CIFAR-10 network ---------------------------------------
class FastBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
            nn.BatchNorm2d(cout), nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
        )


class ResidualFastBlock(nn.Module):
    """A FastBlock with a third convolution: conv-pool, then two convolutions added back to
    what they start from (a deeper block whose extra depth still trains in few epochs)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.entry = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                   nn.MaxPool2d(2), nn.BatchNorm2d(cout), nn.GELU())
        self.body = nn.Sequential(
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(x)
        return x + self.body(x)


def fastnet_backbone(num_classes: int, widths: tuple[int, int, int], stem: int = 24,
                     convs_per_block: int = 2) -> nn.Module:
    """2x2 stem conv, three conv-pool-conv blocks (with `convs_per_block` = 3, each a
    ResidualFastBlock), global max pool (after airbench's layout)."""
    if convs_per_block not in (2, 3):
        raise ValueError(f"a fastnet block has 2 or 3 convolutions, got {convs_per_block}")
    block = FastBlock if convs_per_block == 2 else ResidualFastBlock
    w1, w2, w3 = widths
    return nn.Sequential(
        nn.Conv2d(3, stem, 2, padding=0), nn.GELU(),
        block(stem, w1), block(w1, w2), block(w2, w3),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(w3, num_classes, bias=False),
        _Scale(1 / 9),
    )


def vgg19(num_classes: int = 10) -> Classifier:
    return Classifier(vgg19_backbone(num_classes), num_classes)


def resnet18(num_classes: int = 10, width: int = 64) -> Classifier:
    return Classifier(resnet_backbone(BasicBlock, [2, 2, 2, 2], num_classes, width), num_classes)


def resnet18_narrow(num_classes: int = 10) -> Classifier:
    """ResNet-18 at a quarter of its width (16 → 128 channels): a CPU-sized classifier of a
    family no CPU obfuscator is trained against (strided stages, average pool, no max pool)."""
    return resnet18(num_classes, width=16)


def resnet50(num_classes: int = 10) -> Classifier:
    return Classifier(resnet_backbone(BottleneckBlock, [3, 4, 6, 3], num_classes), num_classes)


def googlenet(num_classes: int = 10) -> Classifier:
    return Classifier(googlenet_backbone(num_classes), num_classes)


def resnet9(num_classes: int = 10, width: int = 64) -> Classifier:
    return Classifier(resnet9_backbone(num_classes, width), num_classes)


def resnet9_narrow(num_classes: int = 10) -> Classifier:
    return resnet9(num_classes, width=32)


def resnet9_tiny(num_classes: int = 10) -> Classifier:
    return resnet9(num_classes, width=8)


def fastnet(num_classes: int = 10) -> Classifier:
    """The CPU-scale default classifier: ~0.8M parameters."""
    return Classifier(fastnet_backbone(num_classes, (48, 160, 160)), num_classes)


def fastnet_wide(num_classes: int = 10) -> Classifier:
    return Classifier(fastnet_backbone(num_classes, (64, 256, 256)), num_classes)


def fastnet_tiny(num_classes: int = 10) -> Classifier:
    """For tests: a few thousand parameters."""
    return Classifier(fastnet_backbone(num_classes, (8, 16, 16)), num_classes)


# --- CloudNet: the strong cloud classifiers -----------------------------------------------
# fastnet's layout made wider: the paper's regime needs a cloud model far stronger (and costlier)
# than anything the device runs. Trained with a whitened stem (`veil train classifier`'s
# `whiten`); the `_tta` entries are the same weights answering over six views.
# (stem, block widths, convolutions per block)
CLOUDNETS: dict[str, tuple[int, tuple[int, int, int], int]] = {
    "cloudnet_s": (24, (64, 256, 256), 2),
    "cloudnet_m": (24, (128, 384, 512), 2),
    "cloudnet_l": (24, (128, 384, 512), 3),  # >= 15x the obfuscator's MACs, as the paper's
}


class ViewAveraged(Classifier):
    """A classifier whose logits are the mean over six views of each image: the image and its
    mirror, each also shifted by one pixel up-left and down-right (reflected at the border).
    Test-time augmentation as part of the model, so that whatever serves or exports it answers
    the same, and its MACs (six forward passes) say what it costs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        h, w = x.shape[-2:]
        views = (x, padded[..., :h, :w], padded[..., 2:, 2:])
        logits = [super(ViewAveraged, self).forward(v) for view in views
                  for v in (view, view.flip(3))]
        return torch.stack(logits).mean(0)


def cloudnet(name: str, num_classes: int = 10, views: bool = False) -> Classifier:
    stem, widths, convs = CLOUDNETS[name]
    return (ViewAveraged if views else Classifier)(
        fastnet_backbone(num_classes, widths, stem, convs), num_classes)


# --- The device alone: fastnets sized to an obfuscator's budget ------------------------------
# Offloading pays only if the obfuscator's accuracy through the cloud beats what a classifier of
# the same device cost reaches on its own. These fastnets are that baseline: (stem, w1, w2, w3)
# as `fastnet_widths_for` picks them for the obfuscator's MACs at width multiplier α = 1, 0.5,
# 0.25 (fixed here so that their checkpoints keep loading; a test checks the rule still agrees).
FASTNET_WIDTHS = (24, 48, 160, 160)
DEVICE_FASTNETS: dict[str, tuple[float, tuple[int, int, int, int]]] = {
    "fastnet_device_a100": (1.0, (16, 32, 112, 112)),
    "fastnet_device_a050": (0.5, (8, 16, 64, 64)),
    "fastnet_device_a025": (0.25, (8, 8, 32, 48)),
}


def fastnet_macs(stem: int, w1: int, w2: int, w3: int, size: int = 32,
                 convs_per_block: int = 2) -> int:
    """Multiply-accumulates of a fastnet of these widths on one size x size image (the same
    convolutions and matrix products `complexity.count_macs` counts)."""
    side = size - 1  # the 2x2 stem conv without padding
    macs = side * side * stem * 3 * 4
    for cin, cout in ((stem, w1), (w1, w2), (w2, w3)):
        macs += side * side * cin * cout * 9
        side //= 2
        macs += (convs_per_block - 1) * side * side * cout * cout * 9
    return macs + w3 * 10


def fastnet_widths_for(macs: int, stem: int | None = None) -> tuple[int, int, int, int]:
    """The fastnet (stem, w1, w2, w3) whose MACs are closest to `macs`: fastnet's widths scaled
    by one factor and rounded to multiples of 8, the last block up to 16 wider; with `stem`,
    that stem (24 for a whitened one) and only the blocks scaled."""
    if macs < fastnet_macs(stem or 8, 8, 8, 8):
        raise ValueError(f"no fastnet costs as little as {macs:,} MACs")
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for step in range(3, 201):
        scaled, w1, w2 = (max(8, int(w * step / 100 + 4) // 8 * 8) for w in FASTNET_WIDTHS[:3])
        stem_width = stem or scaled
        for extra in (0, 8, 16):
            widths = (stem_width, w1, w2, w2 + extra)
            gap = abs(fastnet_macs(*widths) / macs - 1)
            if best is None or gap < best[0] - 1e-12:
                best = (gap, widths)
    assert best is not None
    return best[1]


# The same budget with a stem of 24 (what `veil train classifier --set whiten=true` needs): the
# cloud recipe's whitened stem tried on the device alone too, at the obfuscator's α = 1 cost.
WHITENED_DEVICE_FASTNETS: dict[str, tuple[float, tuple[int, int, int, int]]] = {
    "fastnet_device_a100_whitened": (1.0, (24, 32, 104, 104)),
}


def fastnet_device(name: str, num_classes: int = 10) -> Classifier:
    stem, *widths = {**DEVICE_FASTNETS, **WHITENED_DEVICE_FASTNETS}[name][1]
    return Classifier(fastnet_backbone(num_classes, tuple(widths), stem), num_classes)
