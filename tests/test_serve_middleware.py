"""The guard in front of the routes (serve/middleware.py): bodies read whole, bounded in time,
and a client that goes away mid-upload."""

from __future__ import annotations

import json
import socket

import pytest

from veil.edge.images import encode_png

try:  # whether or not tests/ is a package
    from tests.serve_helpers import classify
except ModuleNotFoundError:
    from serve_helpers import classify


def _raw_request(url: str, declared: int, sent: bytes, close: bool) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /v1/classify HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}"
                     f"\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n".encode() + sent)
        if close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


@pytest.mark.slow
@pytest.mark.hostile
def test_truncated_upload_times_out_with_408(server, http, obfuscated):
    reply = _raw_request(server, 5000, b"--x\r\n" + bytes(100), close=False)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"] == "body_timeout"
    assert classify(http, encode_png(obfuscated[0])).status_code == 200


@pytest.mark.hostile
def test_client_vanishing_mid_upload_leaves_the_server_serving(server, http, obfuscated):
    _raw_request(server, 5000, b"--x\r\n" + bytes(100), close=True)
    assert classify(http, encode_png(obfuscated[0])).status_code == 200
    assert http.get("/healthz").status_code == 200
