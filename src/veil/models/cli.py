"""`veil models`: the zoo's sizes and the obfuscator's overhead (Table 1's overhead columns)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.files import atomic_write
from ..core.options import parse_image_size
from .complexity import models_report, report_markdown

DEFAULT_OUT = "results/models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"where to write models.json and models.md (default: {DEFAULT_OUT})")
    parser.add_argument("--image-size", type=parse_image_size, default=32, metavar="N",
                        help="count MACs on NxN images (default: 32, the paper's; the paper's "
                             "overheads compare at 32 only)")


def run(args: argparse.Namespace) -> int:
    report = models_report(image_size=args.image_size)
    markdown = report_markdown(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "models.json", json.dumps(report, indent=1) + "\n")
    atomic_write(out / "models.md", markdown)
    print(markdown)
    print(f"wrote {out / 'models.json'} and {out / 'models.md'}")
    return 0
