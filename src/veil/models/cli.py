"""`veil models`: the zoo's sizes and the obfuscator's overhead (Table 1's overhead columns)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .complexity import models_report, report_markdown

DEFAULT_OUT = "results/models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"where to write models.json and models.md (default: {DEFAULT_OUT})")


def run(args: argparse.Namespace) -> int:
    report = models_report()
    markdown = report_markdown(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "models.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "models.md").write_text(markdown)
    print(markdown)
    print(f"wrote {out / 'models.json'} and {out / 'models.md'}")
    return 0
