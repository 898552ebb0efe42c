"""Pretrained weights shipped inside the package (`src/veil/zoo/weights/`), each with a model
card: the reader. `veil.zoo` is its public face; `load_classifier("zoo:NAME")`
(models.loading, the spec in core.specs) reads an entry's classifier through
`pretrained_classifier`.

Weights are stored in fp16 to keep the package small and come back in fp32; the card's numbers
are measured on them, and its sha256 is checked before a byte is unpickled (weights_only=True).
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
from .registry import create_model

DEFAULT = "default"


@dataclass
class Pretrained:
    name: str
    classifier: nn.Module
    obfuscator: nn.Module
    deobfuscator: nn.Module
    classes: tuple[str, ...]
    card: dict[str, Any]


def weights_dir(where: str | os.PathLike | None = None) -> Any:
    """The folder of the shipped entries (a Traversable), or `where`."""
    return Path(where) if where is not None else resources.files("veil").joinpath("zoo",
                                                                                   "weights")


def list_pretrained(where: str | os.PathLike | None = None) -> list[str]:
    """Names of the shipped entries (or of those in the folder `where`)."""
    return sorted(p.name[:-len(".card.json")] for p in weights_dir(where).iterdir()
                  if p.name.endswith(".card.json"))


def card(name: str = DEFAULT, where: str | os.PathLike | None = None) -> dict[str, Any]:
    available = list_pretrained(where)
    if name not in available:
        raise ValueError(f"unknown pretrained model {name!r}; available: "
                         f"{', '.join(available) or 'none'}")
    return json.loads(weights_dir(where).joinpath(f"{name}.card.json").read_text())


def is_classifier_only(info: dict[str, Any]) -> bool:
    """Whether a card is a cloud classifier's alone (no obfuscator pair trained for it yet)."""
    return info.get("kind") == "classifier"


def load(name: str = DEFAULT, device: str | torch.device = "cpu",
         where: str | os.PathLike | None = None) -> Pretrained:
    """Load a shipped classifier + obfuscator + deobfuscator, in eval mode, in fp32."""
    info, state = _read(name, where)
    if is_classifier_only(info):
        raise ValueError(f"pretrained {name!r} is a cloud classifier alone, with no obfuscator: "
                         f"serve or export it as zoo:{name}, or train an obfuscator against it")
    nets = {role: _build(role, info, state).to(device).eval()
            for role in ("classifier", "obfuscator", "deobfuscator")}
    return Pretrained(name, nets["classifier"], nets["obfuscator"], nets["deobfuscator"],
                      tuple(info["classes"]), info)


def pretrained_classifier(name: str, device: str | torch.device = "cpu",
                          where: str | os.PathLike | None = None
                          ) -> tuple[nn.Module, dict[str, Any]]:
    """A shipped entry's classifier in eval mode, and the payload a veil classifier checkpoint
    of it would hold (less the weights); its `sha256` is the weights file's."""
    info, state = _read(name, where)
    model = _build("classifier", info, state).to(device).eval()
    return model, {"kind": "classifier", "model_name": info["classifier"]["model"],
                   "num_classes": len(info["classes"]), "classes": info["classes"],
                   "config": info["classifier"]["recipe"],
                   "metrics": {"test_acc": info["metrics"]["plain_acc"]}, "data": info["data"],
                   "environment": info["training_environment"], "zoo_card": info["classifier"],
                   "image_size": [32, 32], "sha256": info["weights_sha256"]}


def _read(name: str, where: str | os.PathLike | None) -> tuple[dict[str, Any], dict[str, Any]]:
    info = card(name, where)
    data = weights_dir(where).joinpath(f"{name}.pt").read_bytes()
    expected = info.get("weights_sha256")
    if expected != sha256_bytes(data):
        raise ValueError(f"pretrained {name!r}: {name}.pt does not match the sha256 its card "
                         f"records ({str(expected)[:12]}...): the weights are corrupt or were "
                         f"modified")
    return info, torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _build(role: str, info: dict[str, Any], state: dict[str, Any]) -> nn.Module:
    if role == "classifier":
        net = create_model(info["classifier"]["model"], num_classes=len(info["classes"]))
    elif role == "obfuscator":
        recipe = info["obfuscator"]["recipe"]
        net = create_model("obfuscator", width=float(recipe.get("width", 1.0)),
                           noise=float(recipe.get("bottleneck_noise", 0.0)))
    else:
        net = create_model("deobfuscator")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v
                         for k, v in state[role].items()})
    return net
