"""The small CIFAR-10 test sample bundled with veil (lossless original pixels)."""

from __future__ import annotations

from importlib import resources

import numpy as np

from .dataset import CIFAR10_CLASSES, Dataset, Split

SAMPLE_FILE = "cifar10_test_sample.npz"


def load_sample() -> Dataset:
    """200 CIFAR-10 test images (20 per class); the same split serves as train and test."""
    with resources.files("veil.data").joinpath("sample", SAMPLE_FILE).open("rb") as f, \
            np.load(f) as z:
        split = Split(z["images"], z["labels"].astype(np.int64))
    return Dataset("sample", CIFAR10_CLASSES, split, split, "bundled-sample")
