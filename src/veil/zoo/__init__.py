"""Pretrained weights shipped inside the package, each with a model card.

`veil.zoo.load("default")` returns the embedded default: a small CIFAR-10 classifier and the
obfuscator/deobfuscator pair trained against it on this project's CPU (see the card).
Weights are stored in fp16 to keep the package small; the card's numbers are measured on them.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.files import sha256_bytes
from ..models import create_model

DEFAULT = "default"


@dataclass
class Pretrained:
    name: str
    classifier: nn.Module
    obfuscator: nn.Module
    deobfuscator: nn.Module
    classes: tuple[str, ...]
    card: dict[str, Any]


def _weights_dir(where: str | os.PathLike | None = None):
    return Path(where) if where is not None else resources.files("veil.zoo").joinpath("weights")


def list_pretrained(where: str | os.PathLike | None = None) -> list[str]:
    """Names of the shipped entries (or of those in the folder `where`)."""
    return sorted(p.name[:-len(".card.json")] for p in _weights_dir(where).iterdir()
                  if p.name.endswith(".card.json"))


def card(name: str = DEFAULT, where: str | os.PathLike | None = None) -> dict[str, Any]:
    _check(name, where)
    return json.loads(_weights_dir(where).joinpath(f"{name}.card.json").read_text())


def load(name: str = DEFAULT, device: str | torch.device = "cpu",
         where: str | os.PathLike | None = None) -> Pretrained:
    """Load a shipped classifier + obfuscator + deobfuscator, in eval mode, in fp32."""
    info = card(name, where)
    data = _weights_dir(where).joinpath(f"{name}.pt").read_bytes()
    expected = info.get("weights_sha256")
    if expected != sha256_bytes(data):
        raise ValueError(f"pretrained {name!r}: {name}.pt does not match the sha256 its card "
                         f"records ({str(expected)[:12]}...): the weights are corrupt or were "
                         f"modified")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    nets = {}
    for role, model_name in (("classifier", info["classifier"]["model"]),
                             ("obfuscator", "obfuscator"), ("deobfuscator", "deobfuscator")):
        kwargs = ({"num_classes": len(info["classes"])} if role == "classifier" else
                  {"width": float(info["obfuscator"]["recipe"].get("width", 1.0))}
                  if role == "obfuscator" else {})
        net = create_model(model_name, **kwargs)
        net.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in state[role].items()})
        nets[role] = net.to(device).eval()
    return Pretrained(name, nets["classifier"], nets["obfuscator"], nets["deobfuscator"],
                      tuple(info["classes"]), info)


def _check(name: str, where: str | os.PathLike | None = None) -> None:
    available = list_pretrained(where)
    if name not in available:
        raise ValueError(f"unknown pretrained model {name!r}; available: "
                         f"{', '.join(available) or 'none'}")
