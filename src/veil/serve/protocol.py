"""Connection guards in front of the app: request-head size, header count, head timeout and
connections per client host.

uvicorn's httptools protocol parses request heads of any size and waits for them forever, so
one client can hold memory (a 64 MiB header) or every connection slot (slowloris: a byte a
second). `guarded_protocol(limits)` subclasses it; a refused connection gets a short JSON answer
(431, 408 or 503; a request httptools cannot parse, 400) in the error shape of the path asked for
(veil's, or the Open Inference Protocol's under /v2) and is closed before the app sees it.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..core.answers import error_body
from .errors import is_v2
from .limits import ConnectionLimits

_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}
_CODES = {400: "bad_http_request", 408: "head_timeout", 431: "head_too_large",
          503: "too_many_connections"}


_REQUEST_LINE_PEEK = 2048


def _path_of(head_start: bytes) -> bytes:
    """The path of a request line ("POST /v2/... HTTP/1.1"), as far as it was received."""
    parts = head_start.split(b"\r\n", 1)[0].split(b" ")
    return parts[1] if len(parts) > 1 else b""


def refusal(status: int, message: str, path: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response that closes the connection: a JSON error in the shape of
    the path's API (serve/errors.py), as far as the request line was read."""
    code = _CODES[status]
    v2 = is_v2(path.decode("latin-1"))
    body = json.dumps(error_body(code, message, v2)).encode()
    return (f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class GuardedProtocol(HttpToolsProtocol):
    limits = ConnectionLimits()
    per_host: Counter  # open connections by client host, shared by one server's connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host: str | None = None
        self._in_head = True
        self._head_bytes = 0  # of the head being received, as measured before parsing
        self._head_tail = b""  # its last 3 bytes: a blank line may straddle two reads
        self._head_start = b""  # its first bytes: the path, for the refusal's error shape
        self._parsed_head = 0  # the parsed request's URL and fields, in bytes
        self._header_count = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else "?"
        if self.per_host[host] >= self.limits.max_connections_per_host:
            self._refuse(503, f"too many connections from {host}")
            return
        self._host = host
        self.per_host[host] += 1
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        if self._host is not None:
            self.per_host[self._host] -= 1
            if self.per_host[self._host] <= 0:
                del self.per_host[self._host]
            self._host = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head and self._head_too_large(data):
            self._refuse(431, f"request head larger than {self.limits.max_header_bytes} bytes",
                         _path_of(self._head_start))
            return
        super().data_received(data)
        if self._refused or self.transport.is_closing():
            return
        if self._header_count > self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} header fields")

    def _head_too_large(self, data: bytes) -> bool:
        """Measure the head these bytes add to, before the parser sees them: up to its blank
        line when they hold it, else all of them. A head that ends within them ends a
        measurement; the next request's head (pipelined in the same bytes) is measured by its
        parsed fields in `on_headers_complete`."""
        if not self._head_bytes:
            self._head_start = data[:_REQUEST_LINE_PEEK]
        seam = self._head_tail + data
        end = seam.find(b"\r\n\r\n")
        if end < 0:
            self._head_bytes += len(data)
            self._head_tail = seam[-3:]
            return self._head_bytes > self.limits.max_header_bytes
        size = self._head_bytes + end + 4 - len(self._head_tail)
        self._head_bytes, self._head_tail = 0, b""
        return size > self.limits.max_header_bytes

    def on_message_begin(self) -> None:
        if self._refused:
            return
        self._in_head = True
        self._header_count = 0
        self._parsed_head = 0
        self._arm_head_timer()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._parsed_head += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_head += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        # the header bytes are capped, so counting them here (not one by one) bounds memory too
        self._header_count = len(self.headers)
        if self._parsed_head > self.limits.max_header_bytes and not self._refused:
            self._refuse(431, f"request head larger than {self.limits.max_header_bytes} bytes")
        if self._refused or self._header_count > self.limits.max_headers:
            return  # refused after this feed; the app never sees the request
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not (self._in_head or self._refused):
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not (self._in_head or self._refused):
            super().on_message_complete()

    def on_response_complete(self) -> None:
        self._in_head = True  # what arrives next is the next request's head
        self._head_bytes, self._head_tail = 0, b""
        super().on_response_complete()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, f"request head not received within {self.limits.head_timeout_s:g} s")

    def _refuse(self, status: int, message: str, path: bytes | None = None) -> None:
        self._refused = True
        self._disarm_head_timer()
        self.logger.warning("%s: refused with %d: %s", self.client[0] if self.client else "?",
                            status, message)
        if not self.transport.is_closing():
            path = getattr(self, "url", b"") if path is None else path
            self.transport.write(refusal(status, message, path))
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """What httptools cannot parse (a bad Content-Length, a broken request line)."""
        self._refuse(400, msg)


# What GuardedProtocol relies on in uvicorn's private HttpToolsProtocol (uvicorn has no public
# hooks for a head's size, its header count or its time); pyproject.toml pins the uvicorn range
HOOKS = ("connection_made", "connection_lost", "data_received", "on_message_begin", "on_url",
         "on_header", "on_headers_complete", "on_body", "on_message_complete",
         "on_response_complete", "send_400_response")
ATTRIBUTES = ("headers", "client", "transport", "loop", "logger")


def check_uvicorn(base: type = HttpToolsProtocol) -> None:
    """Refuses, loudly and before serving, a uvicorn whose protocol lost what the guards use."""
    import uvicorn

    missing = [h for h in HOOKS if not callable(getattr(base, h, None))]
    init = getattr(base.__init__, "__code__", None)
    names = set(init.co_names) | set(init.co_varnames) if init else set()
    missing += [f"self.{a}" for a in ATTRIBUTES if a not in names and not hasattr(base, a)]
    if missing:
        raise RuntimeError(f"uvicorn {uvicorn.__version__}'s HttpToolsProtocol no longer has "
                           f"{', '.join(missing)}, which veil's connection guards build on; "
                           "install the uvicorn range veil pins (pyproject.toml) or run with "
                           "--no-connection-guards behind a proxy that enforces its own limits")


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """A protocol class for one server: its limits and its own per-host connection counts."""
    check_uvicorn()
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits, "per_host": Counter()})


def uvicorn_options(limits: ConnectionLimits) -> dict[str, Any]:
    """The uvicorn.Config keywords that put these limits in force."""
    return {"http": guarded_protocol(limits), "limit_concurrency": limits.max_connections}
