"""What the tests of `veil serve` (tests/test_serve_*.py) share besides their fixtures (those are
in conftest.py): the test server's limits, a hook that captures what it received, and requests
built by hand."""

from __future__ import annotations

import re
import socket
import threading

import httpx
import numpy as np

MAX_IMAGES = 8
MAX_BODY = 64 * 1024


class Capture:
    """What the server received, for the tests only (raw PNG bytes and decoded arrays)."""

    def __init__(self) -> None:
        self.raws: list[bytes] = []
        self.arrays: list[np.ndarray] = []
        self.lock = threading.Lock()

    def __call__(self, raws: list[bytes], images: np.ndarray) -> None:
        with self.lock:
            self.raws += raws
            self.arrays += list(images)

    def clear(self) -> None:
        with self.lock:
            self.raws, self.arrays = [], []


def files(*payloads: bytes) -> list:
    return [("files", (f"{i}.png", p, "image/png")) for i, p in enumerate(payloads)]


def classify(http: httpx.Client, *payloads: bytes, **params) -> httpx.Response:
    return http.post("/v1/classify", files=files(*payloads), params=params)


def metric(text: str, name: str, absent: float | None = None) -> float:
    """A sample's value; `absent` for a labelled series not yet created (else an error)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    if match is None and absent is not None:
        return absent
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)
