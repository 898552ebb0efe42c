"""Command-line options every command shares, each declared once with one meaning.

Commands add the ones they take (`add_data(parser)`, ...); `apply_runtime(args)` is the one
place a command turns them into process-wide settings (threads, seed, device).
"""

from __future__ import annotations

import argparse

import torch

from .imagefit import check_image_size
from .runtime import resolve_device, seed_everything
from .settings import parse_value

DATA_HELP = ("'cifar10' (downloaded, checksum verified), 'sample' (bundled), a "
             "cifar-10-batches-py folder, a class-folder directory or a .zip")


def parse_image_size(text: str) -> int:
    """--image-size's type: an int in the range veil can fit images to (checked before any
    image is allocated)."""
    try:
        return check_image_size(int(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e) if text.strip().lstrip("-").isdigit()
                                         else f"not a whole number: {text!r}") from None


def parse_warm_start(text: str) -> dict[str, float]:
    """--warm-start's type: STAGE:EPOCHS entries separated by commas ('none': no warm start)."""
    try:
        return parse_value(dict[str, float], text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_data(parser: argparse.ArgumentParser, default: str | None = None,
             what: str = "data source", image_size: bool = True) -> None:
    shown = default or "$VEIL_DATA or cifar10"
    parser.add_argument("--data", metavar="SOURCE", default=default,
                        help=f"{what}: {DATA_HELP} (default: {shown})")
    if image_size:
        parser.add_argument("--image-size", type=parse_image_size, metavar="N",
                            help="fit every image to NxN: shorter side resized (Lanczos), then "
                                 "a centre crop, as the edge client does (default: as stored; "
                                 "the obfuscator needs multiples of 8)")


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument("--device", default=default,
                        help="auto (default: a GPU if there is one), cpu, cuda, cuda:1 ...")


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars or per-epoch lines (also: VEIL_QUIET=1)")


def add_evaluation(parser: argparse.ArgumentParser, default_out: str) -> None:
    """The options of the commands that evaluate trained models (`evaluate`, `attack`)."""
    add_data(parser)
    parser.add_argument("--out", default=default_out, metavar="DIR",
                        help=f"results folder (default: {default_out})")
    parser.add_argument("--test-subset", type=int, metavar="N",
                        help="evaluate on a seeded random subset of N test images")
    parser.add_argument("--seed", type=int, default=0)
    add_device(parser)
    add_threads(parser)
    add_quiet(parser)


def apply_runtime(args: argparse.Namespace) -> torch.device:
    """Threads and seed for this process; the device to run on."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if getattr(args, "seed", None) is not None:
        seed_everything(args.seed)
    return resolve_device(getattr(args, "device", None) or "auto")
