"""`veil trust PROGRAM.pt2 ...`: pin the torch.export programs you trust (`core.trust`): a `.pt2`
is code, and veil loads only those whose sha256 is pinned. `--list` shows the pins."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

from ..core import trust


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("programs", nargs="*", type=Path, metavar="PROGRAM.pt2",
                        help="programs to trust: each file's sha256 is added to the trust list "
                             "(a changed file has another and is refused again)")
    parser.add_argument("--list", action="store_true", help="print the pinned digests")


def run(args: argparse.Namespace) -> int:
    if not args.programs and not args.list:
        raise ValueError("name the .pt2 programs to trust, or --list")
    for path in args.programs:
        if path.suffix != ".pt2":
            raise ValueError(f"{path}: only torch.export programs (.pt2) need trust; veil "
                             "loads checkpoints and ONNX files as data")
        if not path.is_file() or not stat.S_ISREG(path.stat().st_mode):
            raise ValueError(f"{path}: no such program file")
        print(f"trusted {path}: sha256 {trust.pin(path)} (in {trust.trust_file()})")
    if args.list:
        for digest in sorted(trust.pinned()):
            print(digest)
    return 0
