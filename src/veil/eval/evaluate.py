"""`veil.evaluate`: the paper's Tables 1-3 for trained classifiers and obfuscators, the function
behind `veil evaluate` (its flags are EvaluateSettings' fields)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.options import EvaluationSettings, apply_runtime
from ..core.settings import at_least, option
from ..report.results import write_result
from ..run_inputs import load_data, load_models
from .tables import evaluate_tables


@dataclass(kw_only=True)
class EvaluateSettings(EvaluationSettings):
    classifiers: list[str] = option(
        [], "classifier checkpoints (e.g. two seeds of one architecture and other "
            "architectures); the classifier an obfuscator records is added when its file is "
            "still there", metavar="PT")
    obfuscators: list[str] = option(
        [], "obfuscator checkpoints; each is paired with the classifier it was trained for by "
            "sha256", metavar="PT")
    device_alone: list[str] = option(
        [], "classifiers the device could run instead, sending nothing (e.g. the "
            "fastnet_device_* family); Table 1 gives each obfuscator's offloading gain over the "
            "one of its own device cost", metavar="PT")
    out: str = option("results/evaluate", "results folder", metavar="DIR")
    per_class: int = option(1, "Table 2: test images shown per class", metavar="K")
    scale: int = option(4, "Table 2: nearest-neighbour upscaling")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.classifiers and not self.obfuscators:
            raise ValueError("give --classifiers and/or --obfuscators checkpoints to evaluate")
        at_least(self, per_class=1, scale=1)


@dataclass
class Evaluation:
    result: dict[str, Any]  # the veil.eval.tables/1 JSON
    files: list[Path]       # the JSON, its Markdown and figures
    notes: list[str]        # how obfuscators were paired with classifiers


def evaluate(settings: EvaluateSettings | None = None, **options: Any) -> Evaluation:
    """Tables 1-3 of `settings` (or of EvaluateSettings(**options)), written to its `out`."""
    settings = settings or EvaluateSettings(**options)
    device = apply_runtime(settings)
    ds, data_info = load_data(settings.data, settings.test_subset, settings.seed,
                              image_size=settings.image_size)
    classifiers, obfuscators, notes = load_models(settings.classifiers, settings.obfuscators,
                                                  ds.classes, device)
    device_alone, _, _ = load_models(settings.device_alone, [], ds.classes, device)
    result = evaluate_tables(classifiers, obfuscators, ds, data_info, device, settings.seed,
                             settings.per_class, settings.scale, device_alone)
    return Evaluation(result, write_result(result, settings.out), notes)
