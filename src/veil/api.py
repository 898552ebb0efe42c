"""The Python API: an obfuscator for your own classifier, in one call.

    import veil
    result = veil.train_obfuscator(my_model, data="path/to/class-folders", out="runs/mine",
                                   mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    result.obfuscator        # nn.Module, eval mode: [0, 1] images in, images to send out
    result.metrics           # plain / obfuscated accuracy, deobfuscator PSNR and SSIM

Any `nn.Module` that maps (N, 3, H, W) float images to logits will do; give its input
normalisation as mean/std if it expects normalised images (or keep it inside the model).
The run folder is the CLI's (`veil train obfuscator`): config, metrics, checkpoints, the
classifier itself as `classifier.pt2`, and `--resume`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torch import nn

from .models.checkpoints import load_obfuscator_pair
from .train.obfuscator import DEFAULT_RECIPE, ObfuscatorConfig, make_config
from .train.obfuscator import train_obfuscator as _train


@dataclass
class TrainedObfuscator:
    obfuscator: nn.Module
    deobfuscator: nn.Module
    metrics: dict[str, Any]
    checkpoint: Path


def train_obfuscator(classifier: nn.Module | str | Path, data: str | Path, out: str | Path, *,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     weights: str | Path | None = None, recipe: str = DEFAULT_RECIPE,
                     resume: bool = False, quiet: bool | None = None,
                     on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
                     **options: Any) -> TrainedObfuscator:
    """Train an obfuscator pair against the frozen `classifier` (a module, or what
    `--classifier` takes: a veil checkpoint, a `.pt2` program, `package.module:function`).
    `options` are `veil train obfuscator`'s settings by name (epochs=, lam=, batch_size=, ...)."""
    known = {f.name for f in fields(ObfuscatorConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"train_obfuscator() got an unknown setting {unknown[0]!r}; settings: "
                        f"{', '.join(sorted(known - {'classifier', 'data', 'out'}))}")
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
