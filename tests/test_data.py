"""Data sources, the decode cache, the resumable download, the tensor loader and the sample."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from veil.data import (
    CIFAR10_CLASSES,
    DataError,
    DownloadError,
    Split,
    TensorLoader,
    download_cifar10,
    load_dataset,
    random_crop,
    random_flip,
    sources,
)
from veil.data.download import CIFAR10_FOLDER, download
from veil.data.loader import CUTOUT_FILL, random_cutout
from veil.data.lossless import jpeg_twins, load_lossless_slice, twin_indices
from veil.data.sample import load_sample

# --- helpers ---------------------------------------------------------------------------------


def png_bytes(value: int, size: tuple[int, int] = (32, 32)) -> bytes:
    """A PNG of the given (width, height) filled with one grey level."""
    buf = io.BytesIO()
    Image.new("RGB", size, (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def class_folder_files(classes: dict[str, tuple[list[str], list[str]]] | None = None,
                       size: tuple[int, int] = (32, 32)) -> dict[str, bytes]:
    """'split/class/file' -> PNG bytes; pixel value = 10 * label + index within the class."""
    classes = classes or {"cat": (["0", "1", "2"], ["0"]), "dog": (["0", "1"], ["0", "1"])}
    files = {}
    for label, (cls, (train, test)) in enumerate(sorted(classes.items())):
        for split, stems in (("train", train), ("test", test)):
            for i, stem in enumerate(stems):
                files[f"{split}/{cls}/{stem}.png"] = png_bytes(10 * label + i, size)
    return files


def write_dir(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes], top: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(top + name, data)
    return path


def fake_batches(n: int = 4, seed: int = 0) -> dict[str, dict[bytes, object]]:
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {name: {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"labels": [int(v) for v in rng.integers(0, 10, n)]} for name in names}


def write_batches(folder: Path, batches: dict[str, dict[bytes, object]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def serve(monkeypatch) -> Iterator[Callable[..., tuple[str, list[dict[str, str]]]]]:
    """serve(payload, honour_range=True) -> (url, request headers seen) on a loopback server."""
    monkeypatch.setenv("no_proxy", "*")
    servers = []

    def start(payload: bytes, honour_range: bool = True) -> tuple[str, list[dict[str, str]]]:
        seen: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                seen.append(dict(self.headers))
                if not self.path.endswith(".tar.gz"):
                    self.send_error(404)
                    return
                first = 0
                if self.headers.get("Range") and honour_range:
                    first = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                    if first >= len(payload):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {first}-{len(payload) - 1}/{len(payload)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(payload) - first))
                self.end_headers()
                self.wfile.write(payload[first:])

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- the shared CIFAR-10 copy and the cache ------------------------------------------------


@pytest.mark.slow
@pytest.mark.needs_cifar10
def test_shared_zip_loads_and_second_load_hits_the_cache(cifar_zip, isolated_cache, monkeypatch):
    ds = load_dataset(cifar_zip)
    assert ds.classes == CIFAR10_CLASSES
    assert ds.train.images.shape == (50000, 32, 32, 3)
    assert ds.test.images.shape == (10000, 32, 32, 3)
    assert ds.train.images.dtype == np.uint8 and ds.train.labels.dtype == np.int64
    assert np.bincount(ds.train.labels).tolist() == [5000] * 10
    assert np.bincount(ds.test.labels).tolist() == [1000] * 10
    assert sources.cache_file(isolated_cache, ds.source_sha256).exists()

    def no_decode(path):
        raise AssertionError("the second load decoded the zip again")

    monkeypatch.setattr(sources, "_read_class_folders_zip", no_decode)
    start = time.perf_counter()
    again = load_dataset(str(cifar_zip))
    assert time.perf_counter() - start < 10
    assert again.source_sha256 == ds.source_sha256 and again.classes == ds.classes
    assert np.array_equal(again.test.images, ds.test.images)
    assert np.array_equal(again.train.labels, ds.train.labels)


@pytest.mark.slow
@pytest.mark.needs_cifar10
def test_shared_zip_keeps_the_original_order_within_each_class(cifar_zip, lossless_npz):
    """File NNNN is the image's rank in its class, so the lossless slice lines up with it."""
    ds = load_dataset(cifar_zip)
    lossless = load_lossless_slice(lossless_npz)
    for split in ("train", "test"):
        twins = jpeg_twins(lossless[split], getattr(ds, split))
        assert np.array_equal(twins.labels, lossless[split].labels)
        diff = twins.images.astype(np.float64) - lossless[split].images
        rmse = np.sqrt((diff ** 2).mean())
        assert 5 < rmse < 12  # JPEG-75 is about 8 on the 0-255 scale; a misaligned image ~70


def test_twin_indices_count_ranks_per_class():
    copy_labels = np.array([0, 0, 0, 1, 1, 2])
    assert twin_indices(np.array([1, 0, 0, 2, 1]), copy_labels).tolist() == [3, 0, 1, 5, 4]
    with pytest.raises(ValueError, match="no image 1 of class 2"):
        twin_indices(np.array([2, 2]), copy_labels)
    with pytest.raises(ValueError, match="sorted by class"):
        twin_indices(np.array([0]), np.array([1, 0]))


def test_lossless_slice_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_lossless_slice(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match="not the lossless CIFAR-10 slice"):
        load_lossless_slice(tmp_path / "other.npz")


# --- class folders -------------------------------------------------------------------------


def test_class_folder_directory(tmp_path):
    files = class_folder_files({"cat": (["0", "2", "10"], ["0"]), "dog": (["0", "1"], ["0"])})
    root = write_dir(tmp_path / "mini", files)
    ds = load_dataset(root, cache=tmp_path / "cache")
    assert ds.name == "mini" and ds.classes == ("cat", "dog")
    assert ds.image_size == (32, 32)
    assert ds.train.labels.tolist() == [0, 0, 0, 1, 1]
    # natural order 0, 2, 10 (not 0, 10, 2): pixel values 0, 1, 2 as written
    assert ds.train.images[:, 0, 0, 0].tolist() == [0, 1, 2, 10, 11]
    assert ds.test.images.shape == (2, 32, 32, 3)
    ds.require_image_size((32, 32))


def test_directory_cache_notices_changes(tmp_path, monkeypatch):
    root = write_dir(tmp_path / "mini", class_folder_files())
    cache = tmp_path / "cache"
    calls = []
    reader = sources._read_class_folders_dir
    monkeypatch.setattr(sources, "_read_class_folders_dir",
                        lambda path, size=None: calls.append(path) or reader(path, size))
    first = load_dataset(root, cache=cache)
    load_dataset(root, cache=cache)
    assert len(calls) == 1
    (root / "train" / "cat" / "3.png").write_bytes(png_bytes(99))
    changed = load_dataset(root, cache=cache)
    assert len(calls) == 2
    assert len(changed.train) == len(first.train) + 1


def test_class_folder_zip_with_a_top_folder(tmp_path):
    path = write_zip(tmp_path / "mini.zip", class_folder_files(), top="mini/")
    ds = load_dataset(path, cache=tmp_path / "cache")
    assert ds.name == "mini" and ds.classes == ("cat", "dog")
    assert (len(ds.train), len(ds.test)) == (5, 3)


def test_zip_with_an_undecodable_member_names_it(tmp_path):
    files = class_folder_files()
    files["train/dog/1.png"] = b"not a png at all"
    path = write_zip(tmp_path / "bad.zip", files)
    with pytest.raises(DataError, match=r"train/dog/1\.png: corrupt or unreadable image"):
        load_dataset(path, cache=tmp_path / "cache")


@pytest.mark.hostile
def test_zip_with_a_damaged_member_names_it(tmp_path):
    files = class_folder_files()
    files["test/dog/1.png"] = png_bytes(200)  # unique bytes, so that find() lands in this member
    path = write_zip(tmp_path / "crc.zip", files)
    raw = bytearray(path.read_bytes())
    at = raw.find(files["test/dog/1.png"]) + len(files["test/dog/1.png"]) // 2
    raw[at] ^= 0xFF  # stored uncompressed, so this flips a byte of the member: a CRC error
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"corrupt zip member test/dog/1\.png"):
        load_dataset(path, cache=tmp_path / "cache")


def test_missing_source_says_what_was_expected(tmp_path):
    with pytest.raises(DataError, match="data source not found.*cifar10.*sample"):
        load_dataset(tmp_path / "nowhere", cache=tmp_path / "cache")


def test_a_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match="not a zip archive"):
        load_dataset(path, cache=tmp_path / "cache")


def test_class_folders_that_differ_between_train_and_test(tmp_path):
    files = class_folder_files({"cat": (["0"], ["0"]), "dog": (["0"], [])})
    files["test/bird/0.png"] = png_bytes(5)
    root = write_dir(tmp_path / "mini", files)
    with pytest.raises(DataError, match=r"differ between train and test: only in train \['dog'\]"
                                        r", only in test \['bird'\]"):
        load_dataset(root, cache=tmp_path / "cache")


def test_empty_split(tmp_path):
    files = class_folder_files({"cat": (["0"], []), "dog": (["0"], [])})
    root = write_dir(tmp_path / "mini", files)
    (root / "test" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="the test split is empty or missing"):
        load_dataset(root, cache=tmp_path / "cache")


def test_images_of_different_sizes(tmp_path):
    files = class_folder_files()
    files["train/cat/1.png"] = png_bytes(0, (16, 32))
    root = write_dir(tmp_path / "mini", files)
    with pytest.raises(DataError, match=r"differ in size, e.g. train/cat/1\.png is 16x32"):
        load_dataset(root, cache=tmp_path / "cache")


def test_images_that_are_not_32x32(tmp_path):
    root = write_dir(tmp_path / "mini", class_folder_files(size=(24, 24)))
    ds = load_dataset(root, cache=tmp_path / "cache")
    assert ds.image_size == (24, 24)
    with pytest.raises(ValueError, match="train images are 24x24, the model needs 32x32 RGB"):
        ds.require_image_size()


def test_split_validates_its_arrays():
    with pytest.raises(ValueError, match="must be uint8"):
        Split(np.zeros((2, 32, 32, 3), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        Split(np.zeros((2, 32, 32, 3), np.uint8), np.zeros(3, np.int64))
    split = Split(np.zeros((10, 4, 4, 3), np.uint8), np.arange(10))
    assert len(split.subset(4, seed=1)) == 4 and split.subset(None) is split


# --- the official python batches -----------------------------------------------------------


def test_cifar_batches_folder(tmp_path):
    batches = fake_batches()
    folder = write_batches(tmp_path / CIFAR10_FOLDER, batches)
    ds = load_dataset(folder, cache=tmp_path / "cache")
    assert ds.classes == CIFAR10_CLASSES
    assert ds.train.images.shape == (20, 32, 32, 3) and ds.test.images.shape == (4, 32, 32, 3)
    data = batches["data_batch_2"][b"data"]
    i, h, w, c = 1, 5, 7, 2
    assert ds.train.images[4 + i, h, w, c] == data[i, c * 1024 + h * 32 + w]
    assert ds.test.labels.tolist() == batches["test_batch"][b"labels"]


def test_cifar_batches_folder_with_a_missing_batch(tmp_path):
    folder = write_batches(tmp_path / CIFAR10_FOLDER, fake_batches())
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3: missing CIFAR-10 batch file"):
        load_dataset(folder, cache=tmp_path / "cache")


@pytest.mark.hostile
def test_cifar_batches_folder_with_a_corrupt_batch(tmp_path):
    folder = write_batches(tmp_path / CIFAR10_FOLDER, fake_batches())
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch: corrupt CIFAR-10 batch file"):
        load_dataset(folder, cache=tmp_path / "cache")


class _WritesAFile:
    """A pickle that, when loaded by plain pickle, writes a file (what a hostile folder holds)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (Path(self.target), "owned"))


@pytest.mark.hostile
def test_a_crafted_batch_file_cannot_run_code(tmp_path):
    import pickle

    folder = write_batches(tmp_path / CIFAR10_FOLDER, fake_batches())
    target = tmp_path / "owned.txt"
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": _WritesAFile(str(target))}))
    with pytest.raises(DataError, match=r"data_batch_1: refusing to load pathlib.*write_text"):
        load_dataset(folder, cache=tmp_path / "cache")
    assert not target.exists()
    # the same file under plain pickle would have run it: the test's file is really hostile
    pickle.loads((folder / "data_batch_1").read_bytes())
    assert target.read_text() == "owned"


def test_the_restricted_unpickler_reads_what_official_batches_hold():
    import pickle

    from veil.data.sources import read_cifar_batch
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [3, 1, 4],
             b"data": np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072),
             b"filenames": [b"a.png", b"b.png", b"c.png"]}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        loaded = read_cifar_batch(pickle.dumps(batch, protocol=protocol))
        assert loaded[b"labels"] == [3, 1, 4] and loaded[b"filenames"][2] == b"c.png"
        assert np.array_equal(loaded[b"data"], batch[b"data"])


# --- download --------------------------------------------------------------------------------


def cifar_archive(batches: dict[str, dict[bytes, object]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, batch in batches.items():
            data = pickle.dumps(batch)
            info = tarfile.TarInfo(f"{CIFAR10_FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PAYLOAD = bytes(range(256)) * 64


def test_download(serve, tmp_path):
    url, seen = serve(PAYLOAD)
    dest = download(url, tmp_path / "a.bin", md5(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.bin.part").exists()
    assert "Range" not in seen[0]
    download(url, dest, md5(PAYLOAD))  # already there and verified: no request
    assert len(seen) == 1


def test_download_resumes_a_part_file(serve, tmp_path):
    url, seen = serve(PAYLOAD)
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:5000])
    dest = download(url, tmp_path / "a.bin", md5(PAYLOAD))
    assert seen[0]["Range"] == "bytes=5000-"
    assert dest.read_bytes() == PAYLOAD


def test_download_starts_over_when_the_server_ignores_the_range(serve, tmp_path):
    url, seen = serve(PAYLOAD, honour_range=False)
    (tmp_path / "a.bin.part").write_bytes(b"x" * 5000)
    dest = download(url, tmp_path / "a.bin", md5(PAYLOAD))
    assert seen[0]["Range"] == "bytes=5000-"
    assert dest.read_bytes() == PAYLOAD


def test_download_verifies_an_already_complete_part_file(serve, tmp_path):
    url, _ = serve(PAYLOAD)  # answers 416 to a range past the end
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    assert download(url, tmp_path / "a.bin", md5(PAYLOAD)).read_bytes() == PAYLOAD


@pytest.mark.hostile
def test_download_checksum_mismatch_removes_the_part_file(serve, tmp_path):
    url, _ = serve(PAYLOAD)
    with pytest.raises(DownloadError, match="checksum mismatch.*partial file was removed"):
        download(url, tmp_path / "a.bin", "0" * 32)
    assert not (tmp_path / "a.bin.part").exists() and not (tmp_path / "a.bin").exists()


def test_download_http_error(serve, tmp_path):
    url, _ = serve(PAYLOAD)
    with pytest.raises(DownloadError, match=r"could not download .*404.*--data PATH"):
        download(url.replace(".tar.gz", ".zip"), tmp_path / "a.bin", md5(PAYLOAD))
    assert not (tmp_path / "a.bin").exists()


def test_no_network_fails_fast_and_points_at_local_data(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    start = time.perf_counter()
    with pytest.raises(DownloadError) as err:
        download_cifar10(tmp_path, url="http://127.0.0.1:1/cifar-10-python.tar.gz")
    assert time.perf_counter() - start < 5
    assert "--data" in str(err.value) and "VEIL_DATA" in str(err.value)


def test_download_cifar10_extracts_and_loads(serve, tmp_path, monkeypatch):
    batches = fake_batches(n=2)
    archive = cifar_archive(batches)
    url, seen = serve(archive)
    # left over by an interrupted run: a partial extraction and an incomplete folder
    write_batches(tmp_path / "dl" / f"{CIFAR10_FOLDER}.tmp" / CIFAR10_FOLDER, {"x": {}})
    write_batches(tmp_path / "dl" / CIFAR10_FOLDER, {"data_batch_1": {}})
    folder = download_cifar10(tmp_path / "dl", url=url, md5=md5(archive))
    assert folder.name == CIFAR10_FOLDER and (folder / "test_batch").exists()
    assert not (tmp_path / "dl" / f"{CIFAR10_FOLDER}.tmp").exists()
    assert download_cifar10(tmp_path / "dl", url="http://127.0.0.1:1/") == folder  # no fetch
    # `cifar10` as a source goes through the download into the cache's downloads/ folder
    monkeypatch.setattr(sources, "download_cifar10",
                        partial(download_cifar10, url=url, md5=md5(archive)))
    ds = load_dataset("cifar10", cache=tmp_path / "cache")
    assert (len(ds.train), len(ds.test)) == (10, 2)
    assert (tmp_path / "cache" / "downloads" / CIFAR10_FOLDER / "test_batch").exists()
    assert len(seen) == 2


# --- the tensor loader -----------------------------------------------------------------------


def toy_split(n: int = 10, size: int = 8) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.arange(n))


def batches_of(loader: TensorLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_loader_is_deterministic_per_seed_and_epoch():
    split = toy_split(32)
    make = partial(TensorLoader, split, 8, shuffle=True, crop_padding=2, flip=True, seed=3)
    a, b = make(), make()
    a.set_epoch(1)
    b.set_epoch(1)
    for (xa, ya), (xb, yb) in zip(batches_of(a), batches_of(b), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    b.set_epoch(2)
    order_1 = torch.cat([y for _, y in batches_of(a)])
    order_2 = torch.cat([y for _, y in batches_of(b)])
    assert not torch.equal(order_1, order_2)
    assert sorted(order_1.tolist()) == sorted(order_2.tolist()) == list(range(32))


def test_loader_without_shuffle_keeps_the_order_and_scales_to_unit_range():
    split = toy_split(10)
    (x, y), *_ = TensorLoader(split, 4)
    assert y.tolist() == [0, 1, 2, 3]
    expected = torch.from_numpy(split.images[:4]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(x, expected)


def test_augmentation_keeps_shape_and_dtype():
    loader = TensorLoader(toy_split(10), 4, shuffle=True, crop_padding=4, flip=True)
    for x, y in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 8, 8)
        assert y.dtype == torch.int64 and len(x) == len(y)
        assert x.min() >= 0 and x.max() <= 1


def test_random_crop_shifts_content_inside_zero_padding():
    x = torch.randint(1, 256, (16, 3, 8, 8), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, gen)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (2,) * 4)
    shifts = []
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert any(s != (2, 2) for s in shifts)  # some images moved (and show zero padding)
    assert (out == 0).any()
    assert torch.equal(random_crop(x, 0, gen), x)


def test_random_flip_mirrors_some_images():
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x, strict=True)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


def test_cutout_hides_one_grey_square_per_image_clipped_at_the_border():
    x = torch.zeros(64, 3, 8, 8, dtype=torch.uint8)
    out = random_cutout(x, 3, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    hidden = out[:, 0] == CUTOUT_FILL
    assert torch.equal(hidden, (out == CUTOUT_FILL).all(1))  # every channel alike
    sizes = hidden.flatten(1).sum(1)
    assert sizes.max() == 9 and sizes.min() >= 4 and (sizes < 9).any()  # squares, some clipped
    for square in hidden:
        rows, cols = square.any(1).nonzero().flatten(), square.any(0).nonzero().flatten()
        assert square.sum() == len(rows) * len(cols)  # one rectangle
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()
    assert torch.equal(random_cutout(x, 3, torch.Generator().manual_seed(0)), out)


def test_a_loader_without_cutout_draws_what_it_drew_before_cutout_existed():
    split = toy_split(10)
    plain = [x for x, _ in TensorLoader(split, 4, shuffle=True, crop_padding=2, flip=True)]
    cut = [x for x, _ in TensorLoader(split, 4, shuffle=True, crop_padding=2, flip=True,
                                      cutout=3)]
    for before, after in zip(plain, cut, strict=True):
        changed = before != after
        assert torch.all(after[changed] == CUTOUT_FILL / 255)  # only the squares differ
    assert any((b != a).any() for b, a in zip(plain, cut, strict=True))
    with pytest.raises(ValueError, match="cutout must be 0 \\(none\\) or a square's side"):
        TensorLoader(split, 4, cutout=-1)


@pytest.mark.parametrize(("drop_last", "sizes"), [(False, [4, 4, 2]), (True, [4, 4])])
def test_batch_counts(drop_last, sizes):
    loader = TensorLoader(toy_split(10), 4, drop_last=drop_last)
    assert len(loader) == len(sizes)
    assert [len(y) for _, y in loader] == sizes


def test_loader_rejects_an_empty_split_and_a_zero_batch_size():
    empty = Split(np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="empty split"):
        TensorLoader(empty, 4)
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        TensorLoader(toy_split(), 0)


# --- the bundled sample ----------------------------------------------------------------------


def test_bundled_sample():
    ds = load_sample()
    assert ds.train.images.shape == (200, 32, 32, 3)
    assert np.bincount(ds.train.labels).tolist() == [20] * 10
    assert ds.classes == CIFAR10_CLASSES
    assert load_dataset("sample").test.images.shape == (200, 32, 32, 3)
    file = resources.files("veil.data").joinpath("sample", "cifar10_test_sample.npz")
    assert len(file.read_bytes()) <= 1_000_000


def test_sample_through_veil_data_env(monkeypatch):
    monkeypatch.setenv("VEIL_DATA", "sample")
    assert load_dataset().name == "sample"
