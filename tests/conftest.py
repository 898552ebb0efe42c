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


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One decode cache for the whole session, so the shared zip is decoded at most once."""
    return tmp_path_factory.mktemp("veil-cache")


@pytest.fixture(autouse=True)
def isolated_cache(session_cache, monkeypatch) -> Path:
    monkeypatch.setenv("VEIL_CACHE", str(session_cache))
    monkeypatch.setenv("VEIL_QUIET", "1")
    monkeypatch.delenv("VEIL_DATA", raising=False)
    return session_cache


@pytest.fixture(scope="session")
def cifar_zip() -> Path:
    if not CIFAR_ZIP.exists():
        raise FileNotFoundError(f"the shared CIFAR-10 copy is missing: {CIFAR_ZIP}")
    return CIFAR_ZIP
