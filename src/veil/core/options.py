"""Command-line options every command shares, each declared once with one meaning.

Commands add the ones they take (`add_data(parser)`, ...); the commands that evaluate trained
models take `EvaluationSettings`' fields, as flags and as the arguments of their Python
functions. `apply_runtime(settings)` is the one place a command turns them into process-wide
settings (threads, seed, device).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch

from .imagefit import check_image_size
from .runtime import resolve_device, seed_everything
from .settings import add_options, at_least, option, parse_value

DATA_HELP = ("'cifar10' (downloaded, checksum verified), 'sample' (bundled), a "
             "cifar-10-batches-py folder, a class-folder directory or a .zip")
DEVICE_HELP = "auto (default: a GPU if there is one), cpu, cuda, cuda:1 ..."
THREADS_HELP = "CPU threads for torch (default: torch's)"
QUIET_HELP = "no progress bars or per-epoch lines (also: VEIL_QUIET=1)"


def data_option(what: str = "data source") -> Any:
    """The --data field of a settings class (None: $VEIL_DATA or cifar10)."""
    return option(None, f"{what}: {DATA_HELP} (default: $VEIL_DATA or cifar10)",
                  metavar="SOURCE")


def device_option() -> Any:
    return option("auto", DEVICE_HELP)


def threads_option() -> Any:
    return option(None, THREADS_HELP)


def quiet_option() -> Any:
    return option(False, QUIET_HELP)


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
                        help=DEVICE_HELP)


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help=THREADS_HELP)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)


@dataclass(kw_only=True)
class EvaluationSettings:
    """What every command that evaluates trained models (`evaluate`, `attack`) takes."""

    data: str | None = data_option()
    image_size: int | None = option(
        None, "fit every image to NxN: shorter side resized (Lanczos), then a centre crop, as "
              "the edge client does (default: as stored; the obfuscator needs multiples of 8)",
        metavar="N", parse=parse_image_size)
    out: str = option("results", "results folder", metavar="DIR")
    test_subset: int | None = option(None, "evaluate on a seeded random subset of N test images",
                                     metavar="N")
    seed: int = option(0, "seed of the subsets, training and attacks")
    device: str = device_option()
    threads: int | None = threads_option()
    quiet: bool = quiet_option()

    def __post_init__(self) -> None:
        at_least(self, threads=1)  # --test-subset: load_data checks it, naming the flag
        if self.image_size is not None:
            check_image_size(self.image_size)


def add_evaluation(parser: Any, cls: type[EvaluationSettings] = EvaluationSettings) -> None:
    """EvaluationSettings' flags, with the defaults `cls` (a command's subclass) gives them."""
    add_options(parser, cls, [f for f in EvaluationSettings.__dataclass_fields__])


def apply_runtime(args: Any) -> torch.device:
    """Threads and seed for this process (from parsed flags or a settings instance); the device
    to run on."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if getattr(args, "seed", None) is not None:
        seed_everything(args.seed)
    return resolve_device(getattr(args, "device", None) or "auto")
