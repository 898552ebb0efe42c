"""Loading trained networks: `load_classifier(spec)`, the one way in for a classifier of any
format, and `load_obfuscator_pair` for veil's obfuscator checkpoints. Each is checked before it
is built; the format readers (`external`, `pretrained`, `_read_veil_classifier`) are theirs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.checkpoint import load_checkpoint
from ..core.files import sha256_of
from ..core.imagefit import recorded_image_size
from ..core.specs import ZOO_PREFIX, spec_kind
from ..core.text import check_class_names
from .external import Normalized, read_external
from .pretrained import pretrained_classifier
from .registry import create_model


def load_classifier(spec: str | Path, device: str | torch.device = "cpu",
                    expected_classes: tuple[str, ...] | None = None, verify: bool = True,
                    weights: str | Path | None = None, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None,
                    image_size: tuple[int, int] = (32, 32)) -> tuple[nn.Module, dict]:
    """A classifier in eval mode and its payload, from any of the specs veil takes:

    - a veil classifier checkpoint (`model.pt`, sha256-verified unless `verify=False`);
    - `zoo:NAME`, a shipped entry's classifier (`veil.zoo`);
    - a `torch.export` program (`.pt2`), or a `package.module:function` factory with `weights`
      (`external`);

    behind (x - mean) / std when those are given. Its classes are checked against
    `expected_classes`; `payload["sha256"]` identifies it (the file's, the shipped weights',
    None for a factory)."""
    text, kind = str(spec), spec_kind(spec)
    if weights is not None and kind != "factory":
        what = {"zoo": "a shipped entry", "program": "a torch.export program",
                "checkpoint": "a veil checkpoint"}[kind]
        raise ValueError(f"classifier_weights is for a package.module:function classifier; "
                         f"{spec} is {what} that holds its own weights")
    if kind == "zoo":
        model, payload = pretrained_classifier(text[len(ZOO_PREFIX):], device)
        _check_classes(spec, payload["classes"], expected_classes)
    elif kind in ("program", "factory"):
        model, payload = read_external(spec, device, weights, expected_classes, image_size)
    else:
        model, payload = _read_veil_classifier(spec, device, expected_classes, verify)
    if kind != "zoo":  # what an obfuscator records of its classifier: the file's own hash
        payload = {**payload, "sha256": sha256_of(spec) if Path(text).is_file() else None}
    payload["image_size"] = recorded_image_size(payload.get("image_size"), text)
    payload["classes"] = check_class_names(payload.get("classes"), text)
    return with_normalization(model, payload, mean, std, device)


def _check_classes(spec: str | Path, classes: Sequence[str],
                   expected: tuple[str, ...] | None) -> None:
    if expected is not None and tuple(classes) != tuple(expected):
        raise ValueError(f"{spec}: classifier was trained on classes {list(classes)}, "
                         f"but the data source has {list(expected)}")


def with_normalization(model: nn.Module, payload: dict, mean: Sequence[float] | None,
                       std: Sequence[float] | None, device: str | torch.device = "cpu"
                       ) -> tuple[nn.Module, dict]:
    """The classifier behind (x - mean) / std, its payload noting it; as it is without them."""
    if mean is None and std is None:
        return model, payload
    if mean is None or std is None:
        raise ValueError("give classifier_mean and classifier_std together (3 values each)")
    model = Normalized(model, mean, std).to(device).eval()
    return model, {**payload, "normalization": {"mean": list(mean), "std": list(std)}}


def _read_veil_classifier(path: str | Path, device: str | torch.device,
                          expected_classes: tuple[str, ...] | None, verify: bool
                          ) -> tuple[nn.Module, dict]:
    payload = load_checkpoint(path, map_location=device, verify=verify)
    if payload.get("kind") != "classifier":
        raise ValueError(f"{path}: holds a {payload.get('kind')!r} checkpoint, not a classifier")
    missing = [k for k in ("model_name", "num_classes", "classes", "model") if k not in payload]
    if missing:
        raise ValueError(f"{path}: classifier checkpoint without {', '.join(missing)}")
    count = payload["num_classes"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"{path}: records num_classes {str(count)[:20]}, not a whole number of "
                         "at least 1")
    check_class_names(payload["classes"], str(path))
    _check_classes(path, payload["classes"], expected_classes)
    if len(payload["classes"]) != payload["num_classes"]:
        raise ValueError(f"{path}: names {len(payload['classes'])} classes for a model with "
                         f"{payload['num_classes']} outputs")
    model = create_model(payload["model_name"], num_classes=payload["num_classes"])
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), payload


def load_obfuscator_pair(path: str | Path, device: str | torch.device = "cpu", verify: bool = True
                    ) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """(obfuscator, deobfuscator, payload) from an obfuscator checkpoint, in eval mode."""
    payload = load_checkpoint(path, map_location=device, verify=verify)
    if payload.get("kind") != "obfuscator":
        raise ValueError(f"{path}: holds a {payload.get('kind')!r} checkpoint, not an obfuscator")
    payload["image_size"] = recorded_image_size(payload.get("image_size"), str(path))
    obfuscator = create_model("obfuscator", width=obfuscator_width(payload),
                              noise=obfuscator_noise(payload))
    deobfuscator = create_model("deobfuscator")
    obfuscator.load_state_dict(payload["obfuscator"])
    deobfuscator.load_state_dict(payload["deobfuscator"])
    return obfuscator.to(device).eval(), deobfuscator.to(device).eval(), payload


def obfuscator_noise(payload: dict[str, Any]) -> float:
    """The std of the noise an obfuscator draws into its bottleneck per call (0 before it
    existed: deterministic)."""
    return float((payload.get("config") or {}).get("bottleneck_noise", 0.0))


def obfuscator_width(payload: dict[str, Any]) -> float:
    """The width multiplier α an obfuscator checkpoint was trained at (1 before α existed)."""
    return float((payload.get("config") or {}).get("width", 1.0))


class ArrayObfuscator:
    """An obfuscator checkpoint as a function of numpy arrays: float32 (N, 3, H, W) in [0, 1] in,
    the obfuscated float32 images out (the edge client applies the 8-bit rule and its checks)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.model, _, self.payload = load_obfuscator_pair(path)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()
