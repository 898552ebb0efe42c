"""How a classifier is named wherever veil takes one (`--classifier`, `load_classifier`): one
rule, read here, for every command and for the torch-free server process that only checks it.

    model.pt                  a veil classifier checkpoint (the default)
    zoo:NAME                  a shipped entry (`veil.zoo`), e.g. zoo:default
    program.pt2               a `torch.export` program
    package.module:function   a factory that builds an nn.Module (weights given beside it)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ZOO_PREFIX = "zoo:"
FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def spec_kind(spec: str | os.PathLike) -> str:
    """"zoo", "program", "factory" or "checkpoint" (a path that exists is never a factory)."""
    text = os.fspath(spec)
    if text.startswith(ZOO_PREFIX):
        return "zoo"
    if text.endswith(".pt2"):
        return "program"
    if FACTORY.match(text) is not None and not Path(text).exists():
        return "factory"
    return "checkpoint"
