"""CIFAR-10 data for veil: sources, caching, the bundled sample and a device-side loader."""

from .dataset import CIFAR10_CLASSES, Dataset, Split
from .download import DownloadError, download_cifar10
from .loader import TensorLoader, random_crop, random_flip, to_tensor_images
from .sources import DataError, cache_dir, default_source, load_dataset

__all__ = ["CIFAR10_CLASSES", "DataError", "Dataset", "DownloadError", "Split", "TensorLoader",
           "cache_dir", "default_source", "download_cifar10", "load_dataset", "random_crop",
           "random_flip", "to_tensor_images"]
