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


# --- a served test classifier (the tests of serve/, v2 and the edge client) -------------------
@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """The test classifier, its obfuscator and the obfuscator's ONNX export (made once per
    test process: offload_helpers.build_artifacts)."""
    from offload_helpers import build_artifacts

    return build_artifacts(tmp_path_factory.getbasetemp() / "offload")


@pytest.fixture(scope="module")
def predictor(artifacts):
    from veil.serve.inference import Predictor

    return Predictor.from_checkpoint(artifacts.classifier)


@pytest.fixture(scope="module")
def obfuscated(artifacts):
    """The bundled sample as the edge sends it: 8-bit obfuscated images."""
    from offload_helpers import sample_images
    from veil.edge.obfuscators import OnnxObfuscator

    return OnnxObfuscator(artifacts.onnx)(sample_images())


@pytest.fixture(scope="module")
def capture():
    from serve_helpers import Capture

    return Capture()


@pytest.fixture(scope="module")
def server(predictor, capture):
    """`veil serve`'s app on a loopback port, with the test limits (serve_helpers)."""
    from serve_helpers import MAX_BODY, MAX_IMAGES
    from veil.serve.app import ServerConfig, create_app
    from veil.serve.server import BackgroundServer

    config = ServerConfig(max_batch=16, max_wait_ms=20, max_images=MAX_IMAGES,
                          max_body_bytes=MAX_BODY, body_timeout_s=1.0)
    with BackgroundServer(create_app(predictor, config, on_receive=capture)) as url:
        yield url


@pytest.fixture()
def http(server):
    import httpx

    with httpx.Client(base_url=server, timeout=30) as client:
        yield client
