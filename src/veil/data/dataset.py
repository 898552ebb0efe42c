"""In-memory image classification datasets: uint8 arrays plus class names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core import env
from ..core.imagefit import check_fits_in_memory, fit_arrays

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def subset_indices(total: int, n: int | None, seed: int = 0) -> np.ndarray:
    """The sorted indices of a random n of `total` items (all, in order, if n is None or at
    least `total`): the rule of every `subset`."""
    if n is None or n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).permutation(total)[:n])


@dataclass(frozen=True)
class Split:
    """Images as uint8 (N, H, W, 3) and labels as int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} "
                             f"{self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None, seed: int = 0) -> Split:
        """A class-balanced-in-expectation random subset of n images (all if n is None)."""
        if n is None or n >= len(self):
            return self
        idx = subset_indices(len(self), n, seed)
        return Split(self.images[idx], self.labels[idx])


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: tuple[str, ...]
    train: Split
    test: Split
    source_sha256: str = ""

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.train.images.shape[1:3])

    def require_image_size(self, size: tuple[int, int] = (32, 32)) -> None:
        for split_name, split in (("train", self.train), ("test", self.test)):
            if tuple(split.images.shape[1:3]) != tuple(size):
                raise ValueError(f"{self.name}: {split_name} images are "
                                 f"{split.images.shape[1]}x{split.images.shape[2]}, "
                                 f"the model needs {size[0]}x{size[1]} RGB")

    def require_obfuscator_size(self) -> None:
        """The obfuscator halves the resolution three times: H and W must be multiples of 8."""
        h, w = self.image_size
        if h % 8 or w % 8:
            raise ValueError(f"{self.name}: images are {w}x{h}; the obfuscator needs sides that "
                             "are multiples of 8 (--image-size N fits them to NxN)")

    def fitted(self, size: int | None) -> Dataset:
        """Every image fitted to size x size (`core.imagefit`); itself if size is None."""
        if size is None or self.image_size == (size, size):
            return self
        check_fits_in_memory(len(self.train.labels) + len(self.test.labels), size,
                             env.available_memory(), self.name)
        return Dataset(self.name, self.classes,
                       Split(fit_arrays(self.train.images, size), self.train.labels),
                       Split(fit_arrays(self.test.images, size), self.test.labels),
                       self.source_sha256)

    def subset(self, n_train: int | None = None, n_test: int | None = None,
               seed: int = 0) -> Dataset:
        return Dataset(self.name, self.classes, self.train.subset(n_train, seed),
                       self.test.subset(n_test, seed), self.source_sha256)
