"""The lossless slice of CIFAR-10 (`cifar10-lossless-subset.npz`) and its twins in a JPEG copy.

The slice holds the first 4,000 training and first 1,000 test images of the original batches in
their original order; a class-folder copy names each image by its rank within its class
(`test/cat/0007.jpg` is the eighth cat of the test batch). So the k-th image of class c in the
slice is image k of class c in the copy, which lets one model be scored on both versions of the
same pictures and shows what the re-encoding itself costs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dataset import Split
from .sources import DataError

KEYS = {"train": ("x_train4000", "y_train4000"), "test": ("x_test1000", "y_test1000")}


def load_lossless_slice(path: str | os.PathLike) -> dict[str, Split]:
    """{'train': Split, 'test': Split} from the lossless .npz."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected cifar10-lossless-subset.npz)")
    with np.load(path) as npz:
        missing = [k for pair in KEYS.values() for k in pair if k not in npz.files]
        if missing:
            raise DataError(f"{path}: not the lossless CIFAR-10 slice (missing {missing})")
        return {split: Split(npz[x], npz[y].astype(np.int64)) for split, (x, y) in KEYS.items()}


def twin_indices(labels: np.ndarray, copy_labels: np.ndarray) -> np.ndarray:
    """Indices into a class-sorted copy (every class's images contiguous, in rank order) of the
    images whose original-order labels are `labels`, taken from the start of the original split."""
    if not np.all(np.diff(copy_labels) >= 0):
        raise ValueError("the copy's images must be sorted by class (as load_dataset reads "
                         "class folders)")
    classes, starts, counts = np.unique(copy_labels, return_index=True, return_counts=True)
    start, count = dict(zip(classes, starts, strict=True)), dict(zip(classes, counts, strict=True))
    seen: dict[int, int] = {}
    out = np.empty(len(labels), np.int64)
    for i, c in enumerate(labels.tolist()):
        rank = seen.get(c, 0)
        if c not in start or rank >= count[c]:
            raise ValueError(f"the copy has no image {rank} of class {c}")
        out[i] = start[c] + rank
        seen[c] = rank + 1
    return out


def jpeg_twins(lossless: Split, copy: Split) -> Split:
    """The copy's versions of the lossless slice's images, in the slice's order."""
    idx = twin_indices(lossless.labels, copy.labels)
    return Split(copy.images[idx], copy.labels[idx])
