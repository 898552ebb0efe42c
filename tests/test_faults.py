"""Faults users meet, survived with nothing lost: the disk filling up while veil writes a
checkpoint, a result or its decode cache, and sizes the machine cannot hold.

The full disk is the kernel's answer, ENOSPC, given by `os.write` to every file under the
test's folder once the room set by the test is used up (veil writes every file it keeps
through `core.files.atomic_write`, which writes with `os.write`)."""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from veil.cli import main
from veil.core.checkpoint import load_checkpoint, save_checkpoint
from veil.data.sources import DataError, cache_file, load_dataset

try:
    from tests.test_data import class_folder_files, write_zip
except ImportError:  # run from inside tests/
    from test_data import class_folder_files, write_zip


class Disk:
    """The filesystem under `root` as a disk with `room` bytes free (None: unlimited)."""

    def __init__(self, root: Path) -> None:
        self.root, self.room, self.refused = str(root), None, 0

    def fill(self, room: int = 0) -> None:
        self.room = room

    def free(self) -> None:
        self.room = None

    def admits(self, fd: int, size: int) -> int:
        """How many of `size` bytes may be written to fd."""
        if self.room is None or not os.readlink(f"/proc/self/fd/{fd}").startswith(self.root):
            return size
        allowed = min(size, self.room)
        self.room -= allowed
        return allowed


@pytest.fixture
def disk(tmp_path, monkeypatch) -> Disk:
    disk, real_write = Disk(tmp_path), os.write

    def write(fd: int, data) -> int:
        allowed = disk.admits(fd, len(data))
        if allowed == 0 and len(data):
            disk.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, memoryview(data)[:allowed])

    monkeypatch.setattr(os, "write", write)
    return disk


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, disk):
    path = tmp_path / "last.pt"
    save_checkpoint({"kind": "classifier", "epoch": 1, "w": np.arange(4).tolist()}, path)
    disk.fill(room=100)  # a part of the new file fits, then the disk is full
    with pytest.raises(OSError, match=r"could not write .*last\.pt \(No space left on device\); "
                                      "any previous version of it is unchanged") as caught:
        save_checkpoint({"kind": "classifier", "epoch": 2, "w": [0] * 10_000}, path)
    assert caught.value.errno == errno.ENOSPC and disk.refused == 1
    disk.free()
    assert load_checkpoint(path)["epoch"] == 1  # verified by its content hash
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_full_disk_while_writing_results_is_one_line_and_keeps_the_old_ones(tmp_path, disk,
                                                                               capsys):
    out = tmp_path / "models"
    assert main(["models", "--out", str(out)]) == 0
    before = (out / "models.json").read_bytes()
    capsys.readouterr()
    disk.fill()
    assert main(["models", "--out", str(out), "--image-size", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "could not write" in err and "models.json" in err and "No space left" in err
    assert (out / "models.json").read_bytes() == before
    assert leftovers(tmp_path) == []


def test_a_full_disk_while_caching_decoded_data_only_skips_the_cache(tmp_path, disk):
    source = write_zip(tmp_path / "pets.zip", class_folder_files())
    cache = tmp_path / "cache"
    disk.fill()
    with pytest.warns(UserWarning, match="the decoded data was not cached: .*No space left"):
        ds = load_dataset(source, cache=cache)
    assert len(ds.train.labels) == 5 and len(ds.test.labels) == 3
    assert not cache_file(cache, ds.source_sha256).exists() and leftovers(tmp_path) == []
    disk.free()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_dataset(source, cache=cache)  # cached this time
    assert cache_file(cache, again.source_sha256).exists()
    np.testing.assert_array_equal(again.train.images, ds.train.images)


@pytest.mark.slow
def test_training_stopped_by_a_full_disk_resumes_once_there_is_room(tmp_path, disk, capsys,
                                                                    monkeypatch):
    out = tmp_path / "run"
    argv = ["train", "classifier", "--model", "fastnet_tiny", "--data", "sample", "--out",
            str(out), "--epochs", "3", "--batch-size", "64", "--set", "train_subset=256",
            "--threads", "1", "--quiet"]
    import veil.train.common as common

    real_save = common.save_checkpoint

    def disk_fills_at_the_second_epoch(payload, path):
        if payload.get("epoch") == 2:
            disk.fill()
        return real_save(payload, path)

    monkeypatch.setattr(common, "save_checkpoint", disk_fills_at_the_second_epoch)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err, err
    disk.free()
    monkeypatch.setattr(common, "save_checkpoint", real_save)
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # the epoch before the fault
    assert main([*argv, "--resume"]) == 0
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3]
    assert leftovers(tmp_path) == []


@pytest.mark.hostile
@pytest.mark.parametrize("argv, message", [
    (["train", "classifier", "--data", "sample", "--set", "image_size=100000", "--out", "x"],
     "setting image_size must be between 8 and 2048, got 100000"),
    (["train", "classifier", "--data", "sample", "--set", "image_size=4", "--out", "x"],
     "setting image_size must be between 8 and 2048, got 4"),
    (["evaluate", "--data", "sample", "--image-size", "100000"],
     "--image-size must be between 8 and 2048, got 100000"),
    (["models", "--image-size", "1e9"], "not a whole number: '1e9'"),
])
def test_an_image_size_out_of_range_is_refused_before_anything_is_allocated(argv, message,
                                                                            capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # refused by the option's parser
        code = e.code
    assert code == 2 and message in capsys.readouterr().err


def test_a_dataset_that_would_not_fit_in_memory_is_refused_before_decoding(tmp_path,
                                                                           monkeypatch):
    import veil.core.env as env

    monkeypatch.setattr(env, "available_memory", lambda: 64 * 2**20)  # a 64 MiB machine
    source = write_zip(tmp_path / "pets.zip", class_folder_files())
    with pytest.raises(ValueError, match=r"5 images at 2048x2048 need 0.1 GiB decoded, more "
                                         r"than half of the 0.1 GiB"):
        load_dataset(source, cache=tmp_path / "cache", image_size=2048)
    with pytest.raises(DataError, match="between 8 and 2048, got 4096"):
        load_dataset("sample", image_size=4096)


# --- a run killed anywhere in the staged recipe resumes to the same result ---------------------
TIMINGS = {"wall_s", "images_per_s", "encoder_s", "train_s"}


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory) -> Path:
    from test_train import tiny_classifier_config
    from veil.train import classifier as clf

    out = tmp_path_factory.mktemp("clf")
    clf.train_classifier(tiny_classifier_config(out, epochs=3), quiet=True)
    return out / "model.pt"


def staged_config(classifier: Path, out: Path):
    """The staged recipe in miniature: two passes of encoder and of utility warm start (one
    saved state after each), then two adversarial epochs with λ ramped over the first."""
    from test_train import tiny_obfuscator_config

    return tiny_obfuscator_config(classifier, out, epochs=2, batch_size=50, train_subset=100,
                                  test_subset=50,
                                  warm_start={"encoder": 2, "utility": 2},
                                  warm_start_batch_size=50, lam_ramp_epochs=1.0,
                                  feature_weight=1.0, curve_every=50, curve_images=50, threads=1)


def without_timings(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def run_files(run: Path) -> tuple[list[dict], list[dict], dict]:
    curve = [json.loads(line) for line in (run / "curve.jsonl").read_text().splitlines()]
    return (without_timings(read_metrics(run)), without_timings(curve),
            load_checkpoint(run / "model.pt"))


@pytest.fixture(scope="module")
def uninterrupted(tiny_classifier, tmp_path_factory):
    from veil.train import obfuscator as obf

    run = tmp_path_factory.mktemp("straight")
    obf.train_obfuscator(staged_config(tiny_classifier, run), quiet=True)
    return run_files(run)


# the saves of a run, in order: encoder pass 1 and end, utility pass 1 and end, last.pt after the
# warm start (epoch 0), after epoch 1 (λ ramp) and epoch 2 (adversarial), model.pt
@pytest.mark.slow
@pytest.mark.parametrize("killed_after", [1, 2, 3, 5, 6], ids=[
    "encoder-pass-1", "encoder-end", "utility-pass-1", "warm-start-done", "lambda-ramp-done"])
def test_a_run_killed_anywhere_in_the_staged_recipe_resumes_bit_for_bit(
        killed_after, tiny_classifier, uninterrupted, tmp_path, monkeypatch):
    from veil.train import common, warm_start
    from veil.train import obfuscator as obf

    saves, real_save = [], save_checkpoint

    def save_then_die(payload, path):
        digest = real_save(payload, path)
        saves.append(Path(path).name)
        if len(saves) == killed_after:
            raise KeyboardInterrupt  # the process ends right after this file is complete
        return digest

    monkeypatch.setattr(warm_start, "save_checkpoint", save_then_die)
    monkeypatch.setattr(common, "save_checkpoint", save_then_die)
    config = staged_config(tiny_classifier, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        obf.train_obfuscator(config, quiet=True)
    assert not (tmp_path / "model.pt").exists()
    monkeypatch.setattr(warm_start, "save_checkpoint", real_save)
    monkeypatch.setattr(common, "save_checkpoint", real_save)
    with pytest.raises(RuntimeError, match="already holds a run"):
        obf.train_obfuscator(config, quiet=True)  # without --resume nothing is overwritten
    obf.train_obfuscator(config, resume=True, quiet=True)
    metrics, curve, model = run_files(tmp_path)
    want_metrics, want_curve, want_model = uninterrupted
    assert metrics == want_metrics
    assert curve == want_curve
    for net in ("obfuscator", "deobfuscator"):
        for key, value in want_model[net].items():
            assert torch.equal(model[net][key], value), f"{net}.{key}"
