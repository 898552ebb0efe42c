"""Pretrained weights shipped inside the package, each with a model card.

`veil.zoo.load("default")` returns the embedded default: a small CIFAR-10 classifier and the
obfuscator/deobfuscator pair trained against it on this project's CPU (see the card); any
command that takes a classifier also takes `zoo:default`. The reader lives in
`veil.models.pretrained`; `veil.zoo.build` writes entries.
"""

from __future__ import annotations

from ..core.specs import ZOO_PREFIX
from ..models.pretrained import (
    DEFAULT,
    Pretrained,
    card,
    list_pretrained,
    load,
    weights_dir,
)

__all__ = ["DEFAULT", "ZOO_PREFIX", "Pretrained", "card", "list_pretrained", "load", "weights_dir"]
