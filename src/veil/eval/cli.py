"""`veil evaluate`: the paper's Tables 1-3 for trained classifiers and obfuscators."""

from __future__ import annotations

import argparse

from ..core.options import add_evaluation
from ..core.settings import add_options, from_args
from .evaluate import EvaluateSettings, evaluate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, EvaluateSettings, ["classifiers", "obfuscators", "device_alone"])
    add_evaluation(parser, EvaluateSettings)
    add_options(parser, EvaluateSettings, ["per_class", "scale"])


def run(args: argparse.Namespace) -> int:
    evaluation = evaluate(from_args(EvaluateSettings, args))
    for note in evaluation.notes:
        print(note)
    print(evaluation.files[1].read_text())
    print("wrote " + ", ".join(str(p) for p in evaluation.files))
    return 0
