"""Shared fixtures. Tests run on the CPU; the full CIFAR-10 (JPEG-75) copy lives in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VEIL_SHARED_DATA", REPO.parent / "shared" / "data"))
CIFAR_ZIP = SHARED_DATA / "cifar10-jpeg75.zip"
LOSSLESS_NPZ = SHARED_DATA / "cifar10-lossless-subset.npz"

torch.set_num_threads(int(os.environ.get("VEIL_TEST_THREADS", "2")))


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Path:
    """One cache for the whole session (the shared zip is decoded at most once), set before any
    fixture runs, module-scoped ones included: no test reads or writes the user's own cache
    (decoded data, the trust list of programs)."""
    cache = tmp_path_factory.mktemp("veil-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VEIL_CACHE", str(cache))
        yield cache


@pytest.fixture(autouse=True)
def isolated_cache(session_cache, monkeypatch) -> Path:
    monkeypatch.setenv("VEIL_CACHE", str(session_cache))
    monkeypatch.setenv("VEIL_QUIET", "1")
    monkeypatch.delenv("VEIL_DATA", raising=False)
    return session_cache


def require_shared(path: Path) -> Path:
    """`path` if it exists. Otherwise the test is skipped with what is missing and how to provide
    it, unless VEIL_REQUIRE_DATA=1 (as in CI), where a missing copy fails the test instead."""
    if path.exists():
        return path
    message = (f"needs the CIFAR-10 (JPEG-75) copy {path.name}, not found in {path.parent}; "
               "set VEIL_SHARED_DATA=DIR to the folder that holds it")
    if os.environ.get("VEIL_REQUIRE_DATA") == "1":
        pytest.fail(f"VEIL_REQUIRE_DATA=1 but the test {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cifar_zip() -> Path:
    return require_shared(CIFAR_ZIP)


@pytest.fixture(scope="session")
def lossless_npz() -> Path:
    return require_shared(LOSSLESS_NPZ)
