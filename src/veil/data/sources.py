"""Data sources named one way everywhere (`--data` / `VEIL_DATA`), decoded once and cached.

A source is one of:
  * `cifar10`: the official archive, downloaded into the cache (checksum-verified);
  * a folder `cifar-10-batches-py` (the official python batches, extracted);
  * a class-folder dataset `<root>/{train,test}/<class>/*.{png,jpg}`, as a directory or a `.zip`
    (one top-level folder inside the zip is allowed, e.g. `cifar10/train/...`);
  * `sample`: the small CIFAR-10 test sample bundled with veil (for demos and tests).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..core import env
from ..core.files import atomic_write, sha256_of
from ..core.imagefit import check_fits_in_memory, check_image_size, fit_image
from ..core.unpickling import UnsafePickleError, load_restricted
from .dataset import CIFAR10_CLASSES, Dataset, Split
from .download import download_cifar10

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
CACHE_VERSION = "1"


class DataError(ValueError):
    """A data source that cannot be read; the message names the file."""


def cache_dir() -> Path:
    return env.cache_dir()


def default_source() -> str:
    return env.data_source()


def load_dataset(source: str | os.PathLike | None = None, cache: Path | None = None,
                 image_size: int | None = None) -> Dataset:
    """Load a data source (see module docstring); None means `$VEIL_DATA` or `cifar10`.
    `image_size`: every image fitted to image_size x image_size (`core.imagefit`: shorter side
    resized, centre crop), which also admits class folders whose images differ in size."""
    if image_size is not None:
        try:
            check_image_size(image_size)
        except ValueError as e:
            raise DataError(str(e)) from None
    source = str(source if source is not None else default_source())
    cache = Path(cache) if cache is not None else cache_dir()
    if source == "sample":
        from .sample import load_sample
        return load_sample().fitted(image_size)
    if source == "cifar10":
        return _cached(download_cifar10(cache / "downloads"), cache, _read_cifar_batches,
                       image_size)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"data source not found: {path} (expected 'cifar10', 'sample', a "
                        f"cifar-10-batches-py folder, or a class-folder directory or .zip)")
    if path.is_dir() and (path / "data_batch_1").exists():
        return _cached(path, cache, _read_cifar_batches, image_size)
    if path.is_dir():
        return _cached(path, cache, _read_class_folders_dir, image_size)
    if zipfile.is_zipfile(path):
        return _cached(path, cache, _read_class_folders_zip, image_size)
    raise DataError(f"{path}: not a zip archive, a class-folder directory or a "
                    f"cifar-10-batches-py folder")


def _source_key(path: Path) -> str:
    """sha256 of the file's bytes, or of a directory's file names, sizes and mtimes."""
    if path.is_file():
        return sha256_of(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_file(cache: Path, key: str) -> Path:
    """Where the decoded arrays of the source with this key are cached."""
    return Path(cache) / "datasets" / f"{key[:24]}-v{CACHE_VERSION}.npz"


def _cached(path: Path, cache: Path, reader: Callable[[Path, int | None], Dataset],
            image_size: int | None) -> Dataset:
    """The source decoded (fitted to image_size if given), from the cache when it is there;
    the key is the source's (each image size is cached apart, the dataset names the source)."""
    key = _source_key(path)
    file = cache_file(cache, key)
    if image_size is not None:
        file = file.with_name(f"{file.stem}-{image_size}px.npz")
    if file.exists():
        with np.load(file, allow_pickle=False) as z:
            return Dataset(str(z["name"]), tuple(str(c) for c in z["classes"]),
                           Split(z["x_train"], z["y_train"]), Split(z["x_test"], z["y_test"]),
                           key)
    ds = reader(path, image_size)
    buffer = io.BytesIO()
    np.savez(buffer, name=ds.name, classes=np.array(ds.classes), x_train=ds.train.images,
             y_train=ds.train.labels, x_test=ds.test.images, y_test=ds.test.labels)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(file, buffer.getvalue())
    except OSError as e:  # the cache only saves time: a full disk must not stop the run
        warnings.warn(f"the decoded data was not cached: {e}", stacklevel=2)
    return Dataset(ds.name, ds.classes, ds.train, ds.test, key)


# --- the official python batches -------------------------------------------------------------
# what the official batches are made of besides plain data: numpy arrays, whose pickles name
# only these globals
CIFAR_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),  # arrays pickled by numpy 1.x (the official files)
    ("numpy._core.multiarray", "_reconstruct"),  # arrays pickled by numpy 2.x
    ("numpy._core.numeric", "_frombuffer"),  # arrays pickled at protocol 5
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2 (a pure function)
})
CIFAR_HOLDS = "a CIFAR-10 batch holds only dicts, lists, bytes, numbers and numpy arrays"


def read_cifar_batch(file: BinaryIO | bytes) -> Any:
    """One official CIFAR-10 python batch, through the restricted unpickler."""
    return load_restricted(file, CIFAR_GLOBALS, CIFAR_HOLDS)


def _read_cifar_batches(folder: Path, image_size: int | None = None) -> Dataset:
    def read(names: Iterable[str]) -> Split:
        xs, ys = [], []
        for name in names:
            file = folder / name
            try:
                with open(file, "rb") as f:
                    batch = read_cifar_batch(f)
                xs.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(batch[b"labels"], np.int64))
            except FileNotFoundError:
                raise DataError(f"{file}: missing CIFAR-10 batch file") from None
            except UnsafePickleError as e:
                raise DataError(f"{file}: {e}") from None
            except Exception as e:
                raise DataError(f"{file}: corrupt CIFAR-10 batch file ({e})") from e
        return Split(np.ascontiguousarray(np.concatenate(xs).transpose(0, 2, 3, 1)),
                     np.concatenate(ys))

    return Dataset("cifar10", CIFAR10_CLASSES, read(f"data_batch_{i}" for i in range(1, 6)),
                   read(["test_batch"])).fitted(image_size)


# --- class folders -------------------------------------------------------------------------
def _decode(name: str, data: bytes, image_size: int | None = None) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode not in ("RGB", "L", "RGBA", "P"):
                raise DataError(f"{name}: unsupported image mode {im.mode}")
            rgb = im.convert("RGB")
            return np.asarray(rgb if image_size is None else fit_image(rgb, image_size),
                              np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{name}: corrupt or unreadable image ({e})") from e


def _build(name: str, members: dict[str, dict[str, list[str]]],
           read: Callable[[str], bytes], where: str, image_size: int | None = None) -> Dataset:
    """members: split -> class -> member names; read: member name -> bytes."""
    for split in ("train", "test"):
        if not members.get(split):  # _group only lists folders that hold images
            raise DataError(f"{where}: the {split} split is empty or missing: no images in "
                            f"{split}/<class>/ (expected <root>/train/<class>/*.png and "
                            f"<root>/test/<class>/*.png)")
    train_classes, test_classes = sorted(members["train"]), sorted(members["test"])
    if train_classes != test_classes:
        raise DataError(f"{where}: class folders differ between train and test: "
                        f"only in train {sorted(set(train_classes) - set(test_classes))}, "
                        f"only in test {sorted(set(test_classes) - set(train_classes))}")

    def split_arrays(split: str) -> Split:
        names, labels = [], []
        for label, cls in enumerate(train_classes):
            files = sorted(members[split][cls], key=_natural_key)
            names += files
            labels += [label] * len(files)
        if image_size is not None:
            check_fits_in_memory(len(names), image_size, env.available_memory(), where)
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            images = list(pool.map(lambda n: _decode(n, read(n), image_size), names,
                                   chunksize=256))
        odd = next((i for i, im in enumerate(images) if im.shape != images[0].shape), None)
        if odd is not None:
            raise DataError(f"{where}: images differ in size, e.g. {names[odd]} is "
                            f"{_size(images[odd])} but {names[0]} is {_size(images[0])}; "
                            "--image-size N fits them all to NxN")
        return Split(np.stack(images), np.asarray(labels, np.int64))

    return Dataset(name, tuple(train_classes), split_arrays("train"), split_arrays("test"))


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"


def _natural_key(name: str) -> tuple:
    stem = PurePosixPath(name).stem
    return (int(stem) if stem.isdigit() else float("inf"), name)


def _group(paths: Iterable[str]) -> dict[str, dict[str, list[str]]]:
    """Group 'train/<class>/<file>' paths (after stripping a common top folder)."""
    paths = [p for p in paths if PurePosixPath(p).suffix.lower() in IMAGE_SUFFIXES]
    tops = {PurePosixPath(p).parts[0] for p in paths}
    strip = 1 if len(tops) == 1 and tops.isdisjoint({"train", "test"}) else 0
    out: dict[str, dict[str, list[str]]] = {}
    for p in paths:
        parts = PurePosixPath(p).parts[strip:]
        if len(parts) == 3 and parts[0] in ("train", "test"):
            out.setdefault(parts[0], {}).setdefault(parts[1], []).append(p)
    return out


def _read_class_folders_dir(root: Path, image_size: int | None = None) -> Dataset:
    rel = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return _build(root.name, _group(rel), lambda n: (root / n).read_bytes(), str(root),
                  image_size)


def _read_class_folders_zip(path: Path, image_size: int | None = None) -> Dataset:
    with zipfile.ZipFile(path) as zf:
        def read(name: str) -> bytes:
            try:
                with zf.open(name) as f:  # a fresh handle per member keeps reads thread-safe
                    return f.read()
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise DataError(f"{path}: corrupt zip member {name} ({e})") from e
        groups = _group(zf.namelist())
        stem = path.stem
        return _build(stem, groups, read, str(path), image_size)
