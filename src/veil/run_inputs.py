"""What a run reads, loaded once and checked against each other: the data (sub-sampled), the
classifiers and obfuscators an evaluation compares (labelled, paired by sha256), and the frozen
target an obfuscator trains against (recorded by a file whose sha256 can be checked later)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .core.files import recorded_path, sha256_of
from .data import Dataset, load_dataset
from .data.sources import default_source
from .models.external import check_classifier, export_classifier
from .models.loading import load_classifier, load_obfuscator_pair, with_normalization


@dataclass
class LoadedClassifier:
    label: str
    path: str
    sha256: str
    model_name: str
    model: nn.Module
    payload: dict[str, Any] = field(repr=False)

    @property
    def seed(self) -> int | None:
        return (self.payload.get("config") or {}).get("seed")

    def info(self) -> dict[str, Any]:
        return {"label": self.label, "model_name": self.model_name, "path": self.path,
                "sha256": self.sha256, "seed": self.seed,
                "recorded_test_acc": (self.payload.get("metrics") or {}).get("test_acc")}


@dataclass
class LoadedObfuscator:
    label: str
    path: str
    sha256: str
    obfuscator: nn.Module
    deobfuscator: nn.Module
    payload: dict[str, Any] = field(repr=False)
    classifier: LoadedClassifier | None = None

    @property
    def lam(self) -> float | None:
        return (self.payload.get("config") or {}).get("lam")

    @property
    def classifier_sha256(self) -> str | None:
        return (self.payload.get("classifier") or {}).get("sha256")

    @property
    def ensemble_sha256(self) -> list[str]:
        """The further classifiers it was trained against, for an ensemble obfuscator."""
        return [m["sha256"] for m in (self.payload.get("classifier") or {}).get("ensemble") or []]

    def info(self) -> dict[str, Any]:
        config = self.payload.get("config") or {}
        return {"label": self.label, "path": self.path, "sha256": self.sha256,
                "classifier": self.classifier.label if self.classifier else None,
                "classifier_sha256": self.classifier_sha256, "lam": self.lam,
                "recipe": config.get("recipe"), "epochs": config.get("epochs"),
                "train_subset": config.get("train_subset"), "seed": config.get("seed")}


def load_data(source: str | None, test_subset: int | None = None, seed: int = 0,
              train_subset: int | None = None, image_size: int | None = None
              ) -> tuple[Dataset, dict[str, Any]]:
    """The data source, sub-sampled (seeded), and a description of it for result JSON."""
    for name, n in (("--test-subset", test_subset), ("--train-subset", train_subset)):
        if n is not None and n < 1:
            raise ValueError(f"{name} must be at least 1, got {n}")
    source = source if source is not None else default_source()
    ds = load_dataset(source, image_size=image_size).subset(train_subset, test_subset, seed)
    ds.require_obfuscator_size()
    if len(ds.test) == 0 or len(ds.train) == 0:
        raise ValueError(f"data source {source!r} has an empty train or test split")
    info = {"source": recorded_path(source), "name": ds.name, "sha256": ds.source_sha256,
            "classes": list(ds.classes), "train_images": len(ds.train),
            "test_images": len(ds.test), "train_subset": train_subset,
            "test_subset": test_subset, "image_size": list(ds.image_size)}
    return ds, info


def load_classifiers(paths: list[str | os.PathLike], classes: tuple[str, ...],
                     device: torch.device) -> list[LoadedClassifier]:
    loaded: list[LoadedClassifier] = []
    for path in paths:
        model, payload = load_classifier(path, device, expected_classes=classes)
        model = model.to(memory_format=torch.channels_last)
        digest = payload["sha256"] or str(path)
        twin = next((c for c in loaded if c.sha256 == digest), None)
        if twin is not None:
            raise ValueError(f"{path}: the same checkpoint as {twin.path} (sha256 "
                             f"{digest[:12]}...); give each classifier once")
        loaded.append(LoadedClassifier("", str(path), digest, payload["model_name"], model,
                                       payload))
    _label_classifiers(loaded)
    return loaded


def _label_classifiers(classifiers: list[LoadedClassifier]) -> None:
    names = [c.model_name if c.seed is None else f"{c.model_name}-s{c.seed}" for c in classifiers]
    for i, c in enumerate(classifiers):
        repeats = names[:i].count(names[i])
        c.label = names[i] if repeats == 0 else f"{names[i]}-{repeats + 1}"


def load_obfuscators(paths: list[str | os.PathLike], classes: tuple[str, ...],
                     device: torch.device) -> list[LoadedObfuscator]:
    loaded: list[LoadedObfuscator] = []
    for path in paths:
        obfuscator, deobfuscator, payload = load_obfuscator_pair(path, device)
        for m in (obfuscator, deobfuscator):
            m.to(memory_format=torch.channels_last)
        if tuple(payload.get("classes") or ()) != tuple(classes):
            raise ValueError(f"{path}: obfuscator was trained on classes "
                             f"{payload.get('classes')}, but the data source has {list(classes)}")
        digest = sha256_of(path)
        if any(o.sha256 == digest for o in loaded):
            raise ValueError(f"{path}: the same obfuscator checkpoint is given twice")
        loaded.append(LoadedObfuscator("", str(path), digest, obfuscator, deobfuscator, payload))
    return loaded


def pair_with_classifiers(obfuscators: list[LoadedObfuscator],
                          classifiers: list[LoadedClassifier], classes: tuple[str, ...],
                          device: torch.device, add_missing: bool = True) -> list[str]:
    """Match each obfuscator to the classifier it was trained for, by sha256.

    A classifier that is not given is loaded from the path its obfuscator records when the file
    there still has the recorded sha256 (and `add_missing`); otherwise this is an error.
    Returns notes on what was added. Labels obfuscators after their classifiers.
    """
    notes = []
    for o in obfuscators:
        recorded = o.payload.get("classifier") or {}
        if not o.classifier_sha256:
            raise ValueError(f"{o.path}: the checkpoint does not record the classifier it was "
                             f"trained for (payload['classifier']['sha256'])")
        match = next((c for c in classifiers if c.sha256 == o.classifier_sha256), None)
        if match is None and add_missing:
            match = _load_recorded(o, recorded, classes, device)
            if match is not None:
                classifiers.append(match)
                _label_classifiers(classifiers)
                notes.append(f"added classifier {match.path} (recorded by {o.path})")
        if match is None:
            given = ", ".join(f"{c.path} ({c.sha256[:12]}...)" for c in classifiers) or "none"
            raise ValueError(
                f"{o.path} was trained for classifier {recorded.get('model_name')!r} with sha256 "
                f"{o.classifier_sha256[:12]}... (recorded path {recorded.get('path')}), which is "
                f"not among the classifiers given: {given}")
        o.classifier = match
    _label_obfuscators(obfuscators)
    return notes


def _load_recorded(o: LoadedObfuscator, recorded: dict[str, Any], classes: tuple[str, ...],
                   device: torch.device) -> LoadedClassifier | None:
    path = recorded.get("path")
    if not path or not Path(path).is_file() or sha256_of(path) != o.classifier_sha256:
        return None
    model, payload = load_classifier(path, device, expected_classes=classes)
    model = model.to(memory_format=torch.channels_last)
    return LoadedClassifier("", str(path), o.classifier_sha256, payload["model_name"], model,
                            payload)


def _label_obfuscators(obfuscators: list[LoadedObfuscator]) -> None:
    names = []
    for o in obfuscators:
        lam = "" if o.lam is None else f"-lam{o.lam:g}"
        members = len(o.ensemble_sha256)
        mode = (o.payload.get("config") or {}).get("ensemble_mode") or "mean"
        ensemble = f"ensemble{members + 1}-{mode}-" if members else ""
        names.append(f"obf-{ensemble}{o.classifier.label if o.classifier else 'unknown'}{lam}")
    for i, o in enumerate(obfuscators):
        repeats = names[:i].count(names[i])
        o.label = names[i] if repeats == 0 else f"{names[i]}-{repeats + 1}"


def load_models(classifier_paths: Sequence[str | os.PathLike],
                obfuscator_paths: Sequence[str | os.PathLike], classes: tuple[str, ...],
                device: torch.device, *, labels: Sequence[str] | None = None,
                add_missing: bool = True
                ) -> tuple[list[LoadedClassifier], list[LoadedObfuscator], list[str]]:
    """Classifiers (labelled by `labels` where given) and obfuscators, each obfuscator paired
    with its classifier by sha256 (`pair_with_classifiers`); with the notes of the pairing."""
    classifiers = load_classifiers(list(classifier_paths), classes, device)
    for c, label in zip(classifiers, labels or (), strict=labels is not None):
        c.label = label
    obfuscators = load_obfuscators(list(obfuscator_paths), classes, device)
    notes = pair_with_classifiers(obfuscators, classifiers, classes, device, add_missing)
    return classifiers, obfuscators, notes


def load_target(spec: str | None, classes: tuple[str, ...], image_size: tuple[int, int],
                device: torch.device, out: Path, *, module: nn.Module | None = None,
                weights: str | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, is_main: bool = True,
                barrier: Callable[[], None] = lambda: None) -> tuple[nn.Module, dict[str, Any]]:
    """The frozen classifier an obfuscator trains against (`module`, or any spec
    `load_classifier` takes), and what the obfuscator's checkpoint records of it. One that is
    not a file veil can check by sha256 alone (a module, a factory, a shipped entry, a
    normalised one) is saved as OUT/classifier.pt2 (by the main process; `barrier` waits for
    it), and that file is recorded."""
    if module is not None:
        name = spec or type(module).__name__
        module = module.to(device).eval()
        check_classifier(module, len(classes), image_size, name)
        classifier, payload = with_normalization(module, {"model_name": name, "metrics": {}},
                                                 mean, std, device)
    else:
        classifier, payload = load_classifier(spec, device, expected_classes=classes,
                                              weights=weights, mean=mean, std=std,
                                              image_size=image_size)
    path = Path(spec) if spec else None
    digest = payload.get("sha256")  # the spec file's, hashed once by load_classifier
    if path is None or not path.is_file() or "normalization" in payload:
        path = out / "classifier.pt2"
        if is_main and not path.exists():
            export_classifier(classifier, path, classes, image_size, payload["model_name"])
        barrier()
        digest = sha256_of(path)
    return classifier, {"model_name": payload["model_name"], "path": str(path),
                        "sha256": digest,
                        "test_acc": payload.get("metrics", {}).get("test_acc")}


def load_ensemble(specs: Sequence[str], classes: tuple[str, ...], image_size: tuple[int, int],
                  device: torch.device, recorded: dict[str, Any]) -> list[nn.Module]:
    """The further classifiers of an ensemble obfuscator (veil checkpoints, `.pt2` programs or
    shipped entries), each recorded in recorded["ensemble"]; each given once."""
    members, recorded["ensemble"] = [], []
    for spec in specs:
        model, payload = load_classifier(spec, device, expected_classes=classes,
                                         image_size=image_size)
        digest = payload["sha256"] or sha256_of(spec)
        if digest in [recorded["sha256"], *(m["sha256"] for m in recorded["ensemble"])]:
            raise ValueError(f"--classifier {spec} is given twice (sha256 {digest[:12]}...)")
        members.append(model)
        recorded["ensemble"].append({"model_name": payload["model_name"], "path": str(spec),
                                     "sha256": digest})
    if not members:
        del recorded["ensemble"]
    return members
