"""The Python API: an obfuscator for your own classifier, in one call.

    import veil
    result = veil.train_obfuscator(my_model, data="path/to/class-folders", out="runs/mine",
                                   mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    result.obfuscator        # nn.Module, eval mode: [0, 1] images in, images to send out
    result.metrics           # plain / obfuscated accuracy, deobfuscator PSNR and SSIM

Any `nn.Module` that maps (N, 3, H, W) float images to logits will do; give its input
normalisation as mean/std if it expects normalised images (or keep it inside the model).
The run folder is the CLI's (`veil train obfuscator`): config, metrics, checkpoints, the
classifier itself as `classifier.pt2`, and `--resume`. A list of classifiers trains one
obfuscator for the ensemble (`ensemble_mode="mean"` or `"cycle"`).

A classifier that can only be queried (a `veil serve` URL, no weights):

    result = veil.train_blackbox_obfuscator("https://cloud.example.org", data="cifar10",
                                            out="runs/bb", query_budget=10_000)
    result.report            # images sent, the real server's plain / obfuscated accuracy

What the commands that measure do, as functions taking their flags' settings by name:

    veil.evaluate(classifiers=[...], obfuscators=[...], data="cifar10")   # Tables 1-3
    veil.attack(obfuscators=["runs/mine/model.pt"], budget=...)          # every attack
    veil.reproduce(scale="tiny", out="runs/reproduce")                     # the paper's runs
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torch import nn

from .attacks.run import AttackRun, AttackSettings, attack
from .eval.evaluate import EvaluateSettings, Evaluation, evaluate
from .models.loading import load_obfuscator_pair
from .pipeline.blackbox import BlackboxSettings, train_blackbox
from .pipeline.reproduce import ReproduceSettings, reproduce
from .train.obfuscator import DEFAULT_RECIPE, ObfuscatorConfig, make_config
from .train.obfuscator import train_obfuscator as _train

__all__ = ["AttackRun", "AttackSettings", "BlackBoxObfuscator", "EvaluateSettings", "Evaluation",
           "ReproduceSettings", "TrainedObfuscator", "attack", "evaluate", "reproduce",
           "train_blackbox_obfuscator", "train_obfuscator"]


@dataclass
class TrainedObfuscator:
    obfuscator: nn.Module
    deobfuscator: nn.Module
    metrics: dict[str, Any]
    checkpoint: Path


Classifier = nn.Module | str | Path


def train_obfuscator(classifier: Classifier | Sequence[Classifier], data: str | Path,
                     out: str | Path, *,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     weights: str | Path | None = None, recipe: str = DEFAULT_RECIPE,
                     resume: bool = False, quiet: bool | None = None,
                     on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
                     **options: Any) -> TrainedObfuscator:
    """Train an obfuscator pair against the frozen `classifier` (a module, or what
    `--classifier` takes: a veil checkpoint, a `.pt2` program, `package.module:function`), or
    against an ensemble: a list whose first member may be a module and whose others are files.
    `options` are `veil train obfuscator`'s settings by name (epochs=, lam=, batch_size=, ...)."""
    known = {f.name for f in fields(ObfuscatorConfig)}
    unknown = sorted(set(options) - known - set(ObfuscatorConfig.RENAMED))
    if unknown:
        raise TypeError(f"train_obfuscator() got an unknown setting {unknown[0]!r}; settings: "
                        f"{', '.join(sorted(known - {'classifier', 'data', 'out', 'ensemble'}))}")
    if isinstance(classifier, (nn.Module, str, Path)):
        classifier = [classifier]
    classifier, *others = classifier
    if any(isinstance(m, nn.Module) for m in others):
        raise TypeError("train_obfuscator(): only the first classifier of an ensemble may be a "
                        "module; give the others as files (a veil checkpoint or a .pt2 program: "
                        "veil.models.external.export_classifier writes one)")
    if others:
        options["ensemble"] = [str(m) for m in others]
    module = classifier if isinstance(classifier, nn.Module) else None
    config = make_config(recipe, **options, data=str(data), out=str(out),
                         classifier="" if module is not None else str(classifier),
                         classifier_weights=None if weights is None else str(weights),
                         classifier_mean=None if mean is None else list(mean),
                         classifier_std=None if std is None else list(std))
    metrics = _train(config, resume=resume, quiet=quiet, on_epoch_end=on_epoch_end,
                     classifier=module)
    checkpoint = Path(out) / "model.pt"
    obfuscator, deobfuscator, _ = load_obfuscator_pair(checkpoint)
    return TrainedObfuscator(obfuscator, deobfuscator, metrics, checkpoint)


@dataclass
class BlackBoxObfuscator:
    obfuscator: nn.Module
    deobfuscator: nn.Module
    report: dict[str, Any]  # OUT/blackbox.json: images sent, the real server's accuracies
    checkpoint: Path


def train_blackbox_obfuscator(classifier_url: str, data: str | Path, out: str | Path, *,
                              token: str | None = None, **options: Any) -> BlackBoxObfuscator:
    """`veil blackbox`: an obfuscator for a classifier reachable only through `veil serve`'s
    /v1/classify. `options` are the command's settings by name (query_budget=, surrogate=,
    surrogate_epochs=, recipe=, epochs=, eval_images=, quiet=, ...), with its defaults."""
    names = {f.name for f in fields(BlackboxSettings)}
    unknown = sorted(set(options) - names)
    if unknown:
        settings = sorted(names - {"classifier_url", "data", "out", "token"})
        raise TypeError(f"train_blackbox_obfuscator() got an unknown setting {unknown[0]!r}; "
                        f"settings: {', '.join(settings)}")
    report = train_blackbox(BlackboxSettings(classifier_url, str(data), str(out), token=token,
                                             **options))
    checkpoint = Path(out) / "obfuscator" / "model.pt"
    obfuscator, deobfuscator, _ = load_obfuscator_pair(checkpoint)
    return BlackBoxObfuscator(obfuscator, deobfuscator, report, checkpoint)
