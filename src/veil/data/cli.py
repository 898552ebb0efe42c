"""`veil data info`: describe a data source; the first look decodes it and caches the arrays."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ..core.options import add_data
from .dataset import Dataset, Split
from .sources import cache_dir, cache_file, default_source, load_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["info"], default="info",
                        help="info: print classes, split sizes, image size, cache file and "
                             "checksum (default)")
    add_data(parser)


def run(args: argparse.Namespace) -> int:
    source = args.data if args.data is not None else default_source()
    cache = cache_dir()
    before = set((cache / "datasets").glob("*.npz"))
    start = time.perf_counter()
    ds = load_dataset(source, cache, image_size=args.image_size)
    seconds = time.perf_counter() - start
    for key, value in describe(ds).items():
        print(f"{key + ':':<12} {value}")
    print(f"{'cache:':<12} {_cache_line(ds, cache, before, seconds)}")
    return 0


def describe(ds: Dataset) -> dict[str, str]:
    h, w = ds.image_size
    return {
        "name": ds.name,
        "classes": f"{len(ds.classes)} ({', '.join(ds.classes)})",
        "train": _split_line(ds.train, len(ds.classes)),
        "test": _split_line(ds.test, len(ds.classes)),
        "image size": f"{h}x{w} RGB",
        "sha256": ds.source_sha256,
    }


def _split_line(split: Split, num_classes: int) -> str:
    counts = np.bincount(split.labels, minlength=num_classes)
    per_class = (f"{counts[0]:,} per class" if counts.min() == counts.max()
                 else f"{counts.min():,} to {counts.max():,} per class")
    return f"{len(split):,} images ({per_class})"


def _cache_line(ds: Dataset, cache: Path, before: set[Path], seconds: float) -> str:
    file = cache_file(cache, ds.source_sha256)
    if not file.exists():
        return f"none (not cached; loaded in {seconds:.1f} s)"
    how = "read from the cache" if file in before else "decoded and cached"
    return f"{file} ({how} in {seconds:.1f} s)"
