"""Hostile connections (serve/protocol.py, limits.py): huge or endless request heads, one host
holding every slot."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from veil.serve.app import ServerConfig, create_app
from veil.serve.limits import ConnectionLimits
from veil.serve.server import BackgroundServer

try:  # whether or not tests/ is a package
    from tests.serve_helpers import connect
except ModuleNotFoundError:
    from serve_helpers import connect


# --- hostile connections: huge or endless request heads, one host holding every slot ----------
GUARDS = ConnectionLimits(max_header_bytes=8192, max_headers=20, head_timeout_s=0.6,
                          max_connections=64, max_connections_per_host=4)


@pytest.fixture(scope="module")
def guarded_server(predictor):
    with BackgroundServer(create_app(predictor, ServerConfig()), limits=GUARDS) as url:
        yield url


def _send_until_answered(sock: socket.socket, head: bytes, filler: bytes, most: int
                         ) -> tuple[bytes, int]:
    """Send head, then filler over and over (up to `most` bytes) until the server answers."""
    sock.sendall(head)
    sent = len(head)
    sock.setblocking(False)
    try:
        while sent < most:
            try:
                sock.send(filler)
                sent += len(filler)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
            with contextlib.suppress(BlockingIOError):
                if reply := sock.recv(65536):
                    return reply, sent
    finally:
        sock.setblocking(True)
    return _read_all(sock), sent


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.hostile
def test_a_64_mib_header_is_answered_431_before_it_is_read(guarded_server):
    with connect(guarded_server) as sock:
        reply, sent = _send_until_answered(sock, b"GET /healthz HTTP/1.1\r\nX-Big: ",
                                           b"a" * 65536, most=64 << 20)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]
    assert sent < 8 << 20, f"the server read {sent} bytes of a header before refusing it"


def _head_of(size: int, path: bytes = b"/healthz") -> bytes:
    """A complete GET head of exactly `size` bytes (padding in one header field)."""
    start = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


@pytest.mark.hostile
@pytest.mark.parametrize("size", [8193, 9000, 33 << 10, 60 << 10])
def test_a_head_over_the_limit_is_431_even_when_it_arrives_in_one_piece(guarded_server, size):
    """The head was measured only while incomplete: one read that completed it reached the app."""
    with connect(guarded_server) as sock:
        sock.sendall(_head_of(size))
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]
    assert b"request head larger than 8192 bytes" in reply


@pytest.mark.hostile
def test_a_head_of_exactly_the_limit_is_served(guarded_server):
    with connect(guarded_server) as sock:
        sock.sendall(_head_of(8192))
        assert _read_all(sock).startswith(b"HTTP/1.1 200")


@pytest.mark.hostile
def test_a_pipelined_oversized_second_head_is_431(guarded_server):
    with connect(guarded_server) as sock:
        first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(first + _head_of(9000))
        reply = _read_all(sock)
    # the connection is refused at the second head (the first's answer may not be written yet)
    assert b"HTTP/1.1 431" in reply and reply.count(b"HTTP/1.1 ") <= 2


@pytest.mark.hostile
def test_an_oversized_head_is_refused_in_the_v2_shape_when_it_asks_for_v2(guarded_server):
    with connect(guarded_server) as sock:
        sock.sendall(_head_of(9000, b"/v2/health/ready"))
        reply = _read_all(sock)
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["code"] == "head_too_large"


@pytest.mark.hostile
def test_30000_headers_are_answered_431(guarded_server):
    with connect(guarded_server) as sock:
        reply, _ = _send_until_answered(sock, b"GET /healthz HTTP/1.1\r\n", b"X-A: b\r\n" * 500,
                                        most=30000 * 8)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]


@pytest.mark.hostile
def test_21_small_headers_are_431_and_20_are_served(guarded_server):
    def request(n: int) -> bytes:
        with connect(guarded_server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-%d: v\r\n" % i for i in range(n - 1))
                         + b"Connection: close\r\n\r\n")
            return _read_all(sock)
    assert request(21).startswith(b"HTTP/1.1 431")
    assert request(19).startswith(b"HTTP/1.1 200")  # 19 + Host = 20 fields


@pytest.mark.hostile
@pytest.mark.parametrize("path, shape", [
    (b"/v2/models/fastnet_tiny/infer", {"error": "more than 20 header fields",
                                        "code": "head_too_large"}),
    (b"/healthz", {"error": "head_too_large", "detail": "more than 20 header fields"})])
def test_a_refused_head_is_answered_in_the_json_shape_of_its_api(guarded_server, path, shape):
    with connect(guarded_server) as sock:
        sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                     + b"".join(b"X-%d: v\r\n" % i for i in range(30)) + b"\r\n")
        reply = _read_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431") and b"content-type: application/json" in head
    assert json.loads(body) == shape


@pytest.mark.hostile
def test_a_content_length_httptools_cannot_parse_is_a_json_400_under_v2(guarded_server):
    with connect(guarded_server) as sock:
        sock.sendall(b"POST /v2/models/fastnet_tiny/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 12abc\r\n\r\n{}")
        reply = _read_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:80]
    assert json.loads(body) == {"error": "Invalid HTTP request received.",
                                "code": "bad_http_request"}


@pytest.mark.parametrize("trickle", [b"", b"GET /healthz HTTP/1.1\r\nX-Slow: "],
                         ids=["silent", "slowloris"])
@pytest.mark.hostile
def test_a_request_head_that_never_ends_is_closed_408(guarded_server, trickle):
    start = time.monotonic()
    with connect(guarded_server) as sock:
        sock.sendall(trickle)
        reply = b""
        sock.settimeout(0.1)
        while time.monotonic() - start < 10 and not reply:
            with contextlib.suppress(TimeoutError, BrokenPipeError):
                if trickle:
                    sock.send(b"a")  # one byte every 0.1 s keeps a naive server waiting
                reply = sock.recv(65536)
    waited = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
    assert waited >= GUARDS.head_timeout_s  # (and the loop above gave it at most 10 s)


def test_the_installed_uvicorn_is_in_the_pinned_range_and_has_what_the_guards_use():
    from importlib.metadata import version

    import tomllib
    from packaging.requirements import Requirement

    from veil.serve.protocol import check_uvicorn

    serve = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pins = [Requirement(r) for r in serve["project"]["optional-dependencies"]["serve"]]
    uvicorn_pin = next(r for r in pins if r.name == "uvicorn")
    assert uvicorn_pin.specifier.contains(version("uvicorn")), uvicorn_pin
    check_uvicorn()


def test_a_uvicorn_whose_protocol_changed_is_refused_loudly():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from veil.serve.protocol import check_uvicorn

    changed = type("Changed", (), {name: getattr(HttpToolsProtocol, name)
                                   for name in ("connection_made", "connection_lost",
                                                "data_received", "on_body")})
    with pytest.raises(RuntimeError, match="no longer has on_message_begin, on_url, on_header, "
                                           "on_headers_complete.*--no-connection-guards"):
        check_uvicorn(changed)


def test_keep_alive_requests_are_not_cut_by_the_head_timeout(guarded_server):
    with httpx.Client(base_url=guarded_server, timeout=10) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(GUARDS.head_timeout_s / 2)


@pytest.mark.hostile
def test_one_host_cannot_hold_every_connection(predictor):
    limits = ConnectionLimits(max_connections_per_host=3, head_timeout_s=30)
    with BackgroundServer(create_app(predictor, ServerConfig()), limits=limits) as url:
        held = [connect(url) for _ in range(3)]
        try:
            time.sleep(0.2)
            with connect(url) as extra:
                assert _read_all(extra).startswith(b"HTTP/1.1 503")
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("field", ["max_header_bytes", "max_headers", "max_connections",
                                   "max_connections_per_host", "head_timeout_s"])
def test_connection_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=field):
        ConnectionLimits(**{field: 0})
