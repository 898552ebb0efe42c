"""One entry point for every network of veil: `create_model(name, **kwargs)` (like timm)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from . import classifiers, obfuscator

_REGISTRY: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    "obfuscator": ("obfuscator", obfuscator.obfuscator),
    "deobfuscator": ("obfuscator", obfuscator.deobfuscator),
    "vgg19": ("classifier", classifiers.vgg19),
    "resnet18": ("classifier", classifiers.resnet18),
    "resnet18_narrow": ("classifier", classifiers.resnet18_narrow),
    "resnet50": ("classifier", classifiers.resnet50),
    "googlenet": ("classifier", classifiers.googlenet),
    "fastnet": ("classifier", classifiers.fastnet),
    "fastnet_wide": ("classifier", classifiers.fastnet_wide),
    "fastnet_tiny": ("classifier", classifiers.fastnet_tiny),
    "resnet9": ("classifier", classifiers.resnet9),
    "resnet9_narrow": ("classifier", classifiers.resnet9_narrow),
    "resnet9_tiny": ("classifier", classifiers.resnet9_tiny),
    **{name: ("classifier", functools.partial(classifiers.fastnet_device, name))
       for name in (*classifiers.DEVICE_FASTNETS, *classifiers.WHITENED_DEVICE_FASTNETS)},
    **{name: ("classifier", functools.partial(classifiers.cloudnet, name))
       for name in classifiers.CLOUDNETS},
    **{f"{name}_tta": ("classifier", functools.partial(classifiers.cloudnet, name, views=True))
       for name in classifiers.CLOUDNETS},
}

PAPER_CLASSIFIERS = ("vgg19", "resnet18", "resnet50", "googlenet")


def list_models(kind: str | None = None) -> list[str]:
    """Names of the registered models, optionally only those of one kind."""
    if kind not in (None, "classifier", "obfuscator"):
        raise ValueError(f"kind must be 'classifier' or 'obfuscator', got {kind!r}")
    return sorted(n for n, (k, _) in _REGISTRY.items() if kind is None or k == kind)


def model_kind(name: str) -> str:
    return _lookup(name)[0]


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a model by name; unknown names raise a ValueError listing the valid ones."""
    return _lookup(name)[1](**kwargs)


def _lookup(name: str) -> tuple[str, Callable[..., nn.Module]]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())}"
        ) from None
