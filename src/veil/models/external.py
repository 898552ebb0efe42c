"""Classifiers veil did not write: a `torch.export` program (`.pt2`), or a factory
`package.module:function` that builds an `nn.Module` (weights from a file, loaded with
`weights_only=True`), each optionally behind a per-channel normalisation.

veil's images are float (N, 3, H, W) in [0, 1]; a classifier that expects normalised input gets
`Normalized(model, mean, std)` in front. A trained obfuscator records its classifier as a `.pt2`
file written next to it (`export_classifier`), so evaluation and serving load a file whose sha256
they can check, whatever the classifier was built from.
"""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.files import atomic_write
from ..core.trust import check_trusted, pin
from ..core.unpickling import no_code_unpickling
from .classifiers import Normalize

META_FILE = "veil.json"  # classes and provenance, inside a .pt2 that veil wrote


class Normalized(nn.Module):
    """(x - mean) / std per channel, then the model: a classifier trained on normalised images
    takes veil's [0, 1] images."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"classifier_mean and classifier_std take 3 values (R G B), got "
                             f"{list(mean)} and {list(std)}")
        if min(std) <= 0:
            raise ValueError(f"--std values must be positive, got {list(std)}")
        self.model = model
        self.normalize = Normalize(tuple(float(m) for m in mean), tuple(float(s) for s in std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


class ExportedClassifier(nn.Module):
    """A loaded `torch.export` program as a module. It was exported in inference mode and keeps
    it: train()/eval() change nothing inside (exported graphs cannot switch modes)."""

    def __init__(self, program: nn.Module, meta: dict[str, Any]) -> None:
        super().__init__()
        self.program, self.meta = program, meta

    def train(self, mode: bool = True) -> ExportedClassifier:
        self.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program(x)


def read_external(spec: str | Path, device: str | torch.device = "cpu",
                  weights: str | Path | None = None,
                  expected_classes: tuple[str, ...] | None = None,
                  image_size: tuple[int, int] = (32, 32)) -> tuple[nn.Module, dict[str, Any]]:
    """The format reader behind `loading.load_classifier` for a `.pt2` program or a
    factory (call that, not this): (model in eval mode, a classifier payload), its classes
    checked against `expected_classes` and its output against a blank batch."""
    spec = str(spec)
    if spec.endswith(".pt2"):
        if weights is not None:
            raise ValueError(f"classifier_weights is for a package.module:function classifier; "
                             f"{spec} is a torch.export program that holds its own weights")
        model, info = _load_program(Path(spec))
    else:
        model, info = _build_from_factory(spec, weights)
    model = model.to(device).eval()
    classes = info.pop("classes")
    if classes is not None and expected_classes is not None \
            and tuple(classes) != tuple(expected_classes):
        raise ValueError(f"{spec}: classifier was made for classes {classes}, but the data "
                         f"source has {list(expected_classes)}")
    classes = classes or expected_classes
    if classes is None:
        raise ValueError(f"{spec}: the classifier does not record its classes; give the data "
                         "it classifies (its class names) as well")
    check_classifier(model, len(classes), image_size, spec)
    return model, {"kind": "classifier", "model_name": info["model_name"],
                   "num_classes": len(classes), "classes": list(classes), "metrics": {},
                   "image_size": info.pop("image_size") or list(image_size), "source": info}


def _load_program(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"classifier program {path} does not exist")
    check_trusted(path)
    extra = {META_FILE: ""}
    try:
        with no_code_unpickling():
            program = torch.export.load(path, extra_files=extra)
    except Exception as err:  # torch raises many types for a file that is not a program
        raise ValueError(f"{path}: not a torch.export program veil can load safely "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                         ")") from err
    meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
    info = {"model_name": meta.get("model_name") or f"export:{path.stem}",
            "classes": meta.get("classes"), "image_size": meta.get("image_size"),
            "source": str(path), "format": "torch.export"}
    return ExportedClassifier(program.module(), meta), info


def _build_from_factory(spec: str, weights: str | Path | None) -> tuple[nn.Module, dict[str, Any]]:
    module_name, _, function_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"--classifier {spec}: cannot import {module_name!r} ({err})") from err
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise ValueError(f"--classifier {spec}: {module_name} has no callable {function_name!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"--classifier {spec}: {function_name}() returned a "
                         f"{type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        try:
            model.load_state_dict(_state_dict(Path(weights), spec))
        except RuntimeError as err:  # missing, unexpected or mis-shaped tensors, all listed
            raise ValueError(f"classifier_weights {weights} do not fit {spec}: "
                             f"{' '.join(str(err).split())}") from err
    return model, {"model_name": spec, "classes": None, "image_size": None, "source": spec,
                   "format": "factory",
                   "weights": None if weights is None else str(weights)}


def _state_dict(path: Path, spec: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (a state dict, or one under 'state_dict' / 'model')."""
    if not path.is_file():
        raise FileNotFoundError(f"classifier_weights {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the restricted unpickler refuses anything but tensors and plain data
        raise ValueError(f"classifier_weights {path}: not a plain state dict that loads with "
                         f"weights_only=True ({type(err).__name__}: {err})") from err
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"classifier_weights {path}: expected a dict of tensors (a state dict) "
                         f"for {spec}")
    return data


@torch.no_grad()
def check_classifier(model: nn.Module, num_classes: int, image_size: tuple[int, int],
                     name: str) -> None:
    """Run two blank images through; a clear error if the model refuses the image size or its
    output is not one logit per class."""
    h, w = image_size
    try:
        out = model(torch.zeros(2, 3, h, w, device=_device_of(model)))
    except Exception as err:  # whatever the model raises for the wrong input size
        raise ValueError(f"classifier {name} refuses {h}x{w} images: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}") from err
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"classifier {name} must map (N, 3, {h}, {w}) images to (N, classes) "
                         f"logits; it gave {shape}")
    if out.shape[1] != num_classes:
        raise ValueError(f"classifier {name} gives {out.shape[1]} outputs, but the data has "
                         f"{num_classes} classes")


def _device_of(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.zeros(())).device


def export_classifier(model: nn.Module, path: str | Path, classes: Sequence[str],
                      image_size: tuple[int, int], model_name: str) -> Path:
    """Write `model` (inference mode, any batch size, this image size) as a `.pt2` program that
    records its classes, for evaluation and serving to load by file."""
    path = Path(path)
    h, w = image_size
    model = model.eval()
    example = torch.rand(2, 3, h, w, device=_device_of(model))
    try:
        program = torch.export.export(model, (example,),
                                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as err:  # torch.export's own error names the unsupported construct
        raise ValueError(f"classifier {model_name} cannot be saved as a torch.export program "
                         f"({type(err).__name__}: {str(err).splitlines()[0]}); give it as a "
                         ".pt2 you exported yourself") from err
    meta = {"classes": list(classes), "model_name": model_name, "image_size": [h, w]}
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={META_FILE: json.dumps(meta)})
    atomic_write(path, buffer.getvalue())
    pin(path)  # veil wrote it: it loads without asking (core.trust)
    return path
