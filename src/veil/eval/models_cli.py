"""`veil models`: the zoo's sizes and the obfuscator's overhead (Table 1's overhead columns)."""

from __future__ import annotations

import argparse

from ..core.options import parse_image_size
from ..models.complexity import models_report
from ..report.results import write_result

DEFAULT_OUT = "results/models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"where to write models.json and models.md (default: {DEFAULT_OUT})")
    parser.add_argument("--image-size", type=parse_image_size, default=32, metavar="N",
                        help="count MACs on NxN images (default: 32, the paper's; the paper's "
                             "overheads compare at 32 only)")


def run(args: argparse.Namespace) -> int:
    written = write_result(models_report(image_size=args.image_size), args.out)
    print(written[1].read_text())
    print("wrote " + " and ".join(str(p) for p in written))
    return 0
