"""Pretrained weights shipped inside the package, each with a model card.

`veil.zoo.load("default")` returns the embedded default: a small CIFAR-10 classifier and the
obfuscator/deobfuscator pair trained against it on this project's CPU (see the card).
Weights are stored in fp16 to keep the package small; the card's numbers are measured on them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
from torch import nn

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


def _weights_dir():
    return resources.files("veil.zoo").joinpath("weights")


def list_pretrained() -> list[str]:
    return sorted(p.name[:-len(".card.json")] for p in _weights_dir().iterdir()
                  if p.name.endswith(".card.json"))


def card(name: str = DEFAULT) -> dict[str, Any]:
    _check(name)
    return json.loads(_weights_dir().joinpath(f"{name}.card.json").read_text())


def load(name: str = DEFAULT, device: str | torch.device = "cpu") -> Pretrained:
    """Load a shipped classifier + obfuscator + deobfuscator, in eval mode, in fp32."""
    info = card(name)
    data = _weights_dir().joinpath(f"{name}.pt").read_bytes()
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    nets = {}
    for role, model_name in (("classifier", info["classifier"]["model"]),
                             ("obfuscator", "obfuscator"), ("deobfuscator", "deobfuscator")):
        kwargs = {"num_classes": len(info["classes"])} if role == "classifier" else {}
        net = create_model(model_name, **kwargs)
        net.load_state_dict({k: v.float() if v.is_floating_point() else v
                             for k, v in state[role].items()})
        nets[role] = net.to(device).eval()
    return Pretrained(name, nets["classifier"], nets["obfuscator"], nets["deobfuscator"],
                      tuple(info["classes"]), info)


def _check(name: str) -> None:
    available = list_pretrained()
    if name not in available:
        raise ValueError(f"unknown pretrained model {name!r}; available: "
                         f"{', '.join(available) or 'none'}")
