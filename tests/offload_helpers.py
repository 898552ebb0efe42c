"""Tiny checkpoints, an exported obfuscator and image bytes shared by the offloading tests."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from veil.core.checkpoint import save_checkpoint
from veil.core.files import sha256_of
from veil.data import CIFAR10_CLASSES, load_dataset
from veil.models import create_model


@dataclass(frozen=True)
class Artifacts:
    classifier: Path
    obfuscator: Path
    onnx: Path


_CACHE: dict[str, Artifacts] = {}


def build_artifacts(root: Path) -> Artifacts:
    """Made once per test process (the export with its parity check is the slow part)."""
    if "artifacts" not in _CACHE:
        from veil.export import export_obfuscator

        root.mkdir(parents=True, exist_ok=True)
        classifier, obfuscator = make_checkpoints(root)
        onnx = export_obfuscator(obfuscator, root / "obfuscator.onnx").onnx_path
        _CACHE["artifacts"] = Artifacts(classifier, obfuscator, onnx)
    return _CACHE["artifacts"]


def _calibrate(model: torch.nn.Module, x: torch.Tensor, seed: int) -> torch.nn.Module:
    """Random BN affine, then BN statistics measured on x: untrained but input-dependent."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration pass
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) * 0.5 + 0.75)
            m.bias.data.copy_(torch.rand(m.num_features, generator=generator) * 0.2 - 0.1)
    model.train()
    model(x)
    return model.eval()


@torch.no_grad()
def _obfuscator_and_classifier() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    x = torch.from_numpy(sample_images()).permute(0, 3, 1, 2).float() / 255
    obfuscator = _calibrate(create_model("obfuscator"), x, seed=1)
    sent = torch.round(obfuscator(x) * 255) / 255
    classifier = _calibrate(create_model("fastnet_tiny"), sent, seed=2)
    classifier.backbone[-2].weight.mul_(30)  # confident predictions
    return obfuscator, classifier


@torch.no_grad()
def make_checkpoints(root: Path) -> tuple[Path, Path]:
    """(classifier.pt, obfuscator.pt) in the payload formats of veil.train."""
    obfuscator, classifier = _obfuscator_and_classifier()
    clf_path, obf_path = root / "classifier.pt", root / "obfuscator.pt"
    save_checkpoint({"kind": "classifier", "model_name": "fastnet_tiny", "num_classes": 10,
                     "classes": list(CIFAR10_CLASSES), "model": classifier.state_dict(),
                     "config": {"model": "fastnet_tiny"}, "metrics": {"test_acc": 0.1},
                     "data": {"name": "none", "sha256": ""}}, clf_path)
    save_checkpoint({"kind": "obfuscator", "obfuscator": obfuscator.state_dict(),
                     "deobfuscator": create_model("deobfuscator").state_dict(),
                     "classifier": {"model_name": "fastnet_tiny", "path": str(clf_path),
                                    "sha256": sha256_of(clf_path), "test_acc": 0.1},
                     "classes": list(CIFAR10_CLASSES),
                     "metrics": {"obfuscated_acc": 0.42, "plain_acc": 0.5}}, obf_path)
    return clf_path, obf_path


def sample_images(n: int | None = None) -> np.ndarray:
    images = load_dataset("sample").test.images
    return images if n is None else images[:n]


def png_bytes(array: np.ndarray, mode: str | None = None, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()
