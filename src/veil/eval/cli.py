"""`veil evaluate`: the paper's Tables 1-3 for trained classifiers and obfuscators."""

from __future__ import annotations

import argparse

from ..core.options import add_evaluation, apply_runtime
from ..report.results import write_result
from ..run_inputs import load_classifiers, load_data, load_obfuscators, pair_with_classifiers
from .tables import evaluate_tables

DEFAULT_OUT = "results/evaluate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classifiers", nargs="+", default=[], metavar="PT",
                        help="classifier checkpoints (e.g. two seeds of one architecture and "
                             "other architectures); the classifier an obfuscator records is "
                             "added when its file is still there")
    parser.add_argument("--obfuscators", nargs="+", default=[], metavar="PT",
                        help="obfuscator checkpoints; each is paired with the classifier it was "
                             "trained for by sha256")
    parser.add_argument("--device-alone", nargs="+", default=[], metavar="PT",
                        help="classifiers the device could run instead, sending nothing (e.g. "
                             "the fastnet_device_* family); Table 1 gives each obfuscator's "
                             "offloading gain over the one of its own device cost")
    add_evaluation(parser, DEFAULT_OUT)
    parser.add_argument("--per-class", type=int, default=1, metavar="K",
                        help="Table 2: test images shown per class (default 1)")
    parser.add_argument("--scale", type=int, default=4,
                        help="Table 2: nearest-neighbour upscaling (default 4)")


def run(args: argparse.Namespace) -> int:
    if not args.classifiers and not args.obfuscators:
        raise ValueError("give --classifiers and/or --obfuscators checkpoints to evaluate")
    if args.per_class < 1 or args.scale < 1:
        raise ValueError("--per-class and --scale must be at least 1")
    device = apply_runtime(args)
    ds, data_info = load_data(args.data, args.test_subset, args.seed,
                                image_size=args.image_size)
    classifiers = load_classifiers(args.classifiers, ds.classes, device)
    obfuscators = load_obfuscators(args.obfuscators, ds.classes, device)
    for note in pair_with_classifiers(obfuscators, classifiers, ds.classes, device):
        print(note)
    device_alone = load_classifiers(args.device_alone, ds.classes, device)
    result = evaluate_tables(classifiers, obfuscators, ds, data_info, device, args.seed,
                             args.per_class, args.scale, device_alone)
    written = write_result(result, args.out)
    print(written[1].read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
