"""`veil report DIR`: regenerate Markdown and figures from the result JSON alone."""

from __future__ import annotations

import argparse

from ..report.results import regenerate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="DIR",
                        help="a results folder (every result JSON under it, zoo cards aside) "
                             "or one JSON file")


def run(args: argparse.Namespace) -> int:
    for path in regenerate(args.target):
        print(f"wrote {path}")
    return 0
