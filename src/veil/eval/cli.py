"""`veil evaluate`: the paper's Tables 1-3 for trained classifiers and obfuscators."""

from __future__ import annotations

import argparse

import torch

from ..core.runtime import resolve_device, seed_everything
from .loading import load_classifiers, load_data, load_obfuscators, pair_with_classifiers
from .report import write_result
from .tables import evaluate_tables

DEFAULT_OUT = "results/evaluate"


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="SOURCE", default=None,
                        help="'cifar10', 'sample', a folder or a .zip (default: $VEIL_DATA or "
                             "cifar10)")


def add_common(parser: argparse.ArgumentParser, default_out: str) -> None:
    add_data_argument(parser)
    parser.add_argument("--out", default=default_out, metavar="DIR",
                        help=f"results folder (default: {default_out})")
    parser.add_argument("--test-subset", type=int, metavar="N",
                        help="evaluate on a seeded random subset of N test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, ...")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classifiers", nargs="+", default=[], metavar="PT",
                        help="classifier checkpoints (e.g. two seeds of one architecture and "
                             "other architectures); the classifier an obfuscator records is "
                             "added when its file is still there")
    parser.add_argument("--obfuscators", nargs="+", default=[], metavar="PT",
                        help="obfuscator checkpoints; each is paired with the classifier it was "
                             "trained for by sha256")
    add_common(parser, DEFAULT_OUT)
    parser.add_argument("--per-class", type=int, default=1, metavar="K",
                        help="Table 2: test images shown per class (default 1)")
    parser.add_argument("--scale", type=int, default=4,
                        help="Table 2: nearest-neighbour upscaling (default 4)")


def setup(args: argparse.Namespace) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    return resolve_device(args.device)


def run(args: argparse.Namespace) -> int:
    if not args.classifiers and not args.obfuscators:
        raise ValueError("give --classifiers and/or --obfuscators checkpoints to evaluate")
    if args.per_class < 1 or args.scale < 1:
        raise ValueError("--per-class and --scale must be at least 1")
    device = setup(args)
    ds, data_info = load_data(args.data, args.test_subset, args.seed)
    classifiers = load_classifiers(args.classifiers, ds.classes, device)
    obfuscators = load_obfuscators(args.obfuscators, ds.classes, device)
    for note in pair_with_classifiers(obfuscators, classifiers, ds.classes, device):
        print(note)
    result = evaluate_tables(classifiers, obfuscators, ds, data_info, device, args.seed,
                             args.per_class, args.scale)
    written = write_result(result, args.out)
    print(written[1].read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
