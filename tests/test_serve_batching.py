"""Dynamic micro-batching (serve/batching.py) through the server: concurrent clients share
forward passes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from veil.edge.images import encode_png

try:  # whether or not tests/ is a package
    from tests.serve_helpers import classify, metric
except ModuleNotFoundError:
    from serve_helpers import classify, metric


# --- concurrency and metrics -------------------------------------------------------------------
@pytest.mark.slow
def test_32_concurrent_clients_are_batched(server, http, obfuscated, predictor):
    expected = predictor(obfuscated).argmax(1)
    barrier = threading.Barrier(32)

    def one_client(k: int) -> list[tuple[int, int]]:
        got = []
        with httpx.Client(base_url=server, timeout=60) as client:
            barrier.wait()
            for i in (k, k + 32, k + 64):
                r = classify(client, encode_png(obfuscated[i]))
                assert r.status_code == 200, r.text
                got.append((i, r.json()["predictions"][0]["class_index"]))
        return got

    with ThreadPoolExecutor(32) as pool:
        results = [pair for pairs in pool.map(one_client, range(32)) for pair in pairs]
    assert len(results) == 96
    assert all(label == expected[i] for i, label in results)
    text = http.get("/metrics").text
    assert metric(text, "veil_batch_size_max") > 1
    assert metric(text, 'veil_batch_size_bucket{le="1.0"}') < metric(text, "veil_batch_size_count")
