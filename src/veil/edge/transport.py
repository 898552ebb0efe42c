"""How the edge talks to a server it does not trust: one `Transport` per server, every answer read
whole within a size cap and a deadline (even from a server that trickles its headers), 429s
honoured, compressed answers refused unread, and errors read in either protocol's shape."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core.answers import read_error
from ..core.wire import HEADER_LENGTH
from .answers import ServerError

# What a server may cost this client. An answer is a few hundred bytes an image; the caps leave
# room for any honest server and stop a broken or hostile one (an endless body, a trickle).
MAX_RESPONSE_BYTES = 4 * 2**20
REQUEST_TIMEOUT = 120.0  # seconds for a whole request, first byte sent to last byte read
MAX_RATE_LIMITED = 8  # 429 answers honoured in a row before giving up
MAX_RETRY_AFTER = 60.0  # the longest Retry-After wait taken


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole within the client's limits."""

    status: int
    body: bytes
    headers: dict[str, str]


class Transport:
    """HTTP to one server, bounded: `request` returns an Answer or raises ServerError (a bad
    or too slow answer) or ConnectionError (no answer); `json` reads an answer's JSON object or
    raises the server's error. `errors` is the error shape the protocol speaks: "v1", veil's
    {"error": code, "detail": text}, or "v2", the Open Inference Protocol's {"error": text}."""

    def __init__(self, server: str, token: str | None = None, *, timeout: float = 30.0,
                 request_timeout: float = REQUEST_TIMEOUT,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, transport: Any = None,
                 errors: str = "v1") -> None:
        import httpx

        if not (timeout > 0 and request_timeout > 0 and max_response_bytes > 0):
            raise ValueError("timeout, request_timeout and max_response_bytes must be positive")
        self.server = server.rstrip("/")
        self.request_timeout, self.max_response_bytes = request_timeout, max_response_bytes
        self.errors = errors
        headers = {"Accept-Encoding": "identity"}  # the size cap counts the bytes as sent
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.server, headers=headers,
                                 timeout=min(timeout, request_timeout), transport=transport)
        self.rate_limited = 0  # 429 waits taken

    def close(self) -> None:
        self.http.close()

    def bad(self, detail: str, status: int = 200) -> ServerError:
        """The error for an answer that is not a valid one."""
        return ServerError(status, "bad_response", detail, self.server)

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        """Send, honouring 429 Retry-After up to MAX_RATE_LIMITED times in a row, all of it
        (every attempt and every wait) within request_timeout."""
        deadline = time.monotonic() + self.request_timeout
        for _ in range(MAX_RATE_LIMITED):
            answer = self._request_once(method, path, deadline, **kwargs)
            if answer.status != 429:
                return answer
            self.rate_limited += 1
            wait = retry_after_seconds(answer.headers.get("retry-after"))
            if time.monotonic() + wait >= deadline:
                raise ServerError(429, "rate_limited", f"rate-limited, and the wait it asks "
                                  f"for ({wait:g} s) would outlast request_timeout "
                                  f"({self.request_timeout:g} s); try again later", self.server)
            time.sleep(wait)
        raise ServerError(429, "rate_limited", f"still rate-limited after {MAX_RATE_LIMITED} "
                          "waits; try again later or with a smaller query rate", self.server)

    def json(self, answer: Answer) -> dict[str, Any]:
        """The answer's JSON object (the header part of a v2 answer with binary data), or the
        server's error as a ServerError."""
        head = answer.body
        length = answer.headers.get(HEADER_LENGTH, "")
        if length.isdigit() and int(length) <= len(head):
            head = head[:int(length)]
        try:
            body = json.loads(head)
        except (ValueError, RecursionError):
            body = None
        if answer.status >= 400:
            code, detail = read_error(body, self.errors == "v2",
                                      answer.body[:200].decode("utf-8", "replace"))
            raise ServerError(answer.status, str(code)[:80], str(detail)[:300], self.server)
        if not isinstance(body, dict):
            raise self.bad("the answer is not a JSON object (is the URL a veil server?)",
                           answer.status)
        return body

    def _request_once(self, method: str, path: str, deadline: float, **kwargs: Any) -> Answer:
        """One request, bounded in time even against a server that trickles its headers:
        the reading runs in a daemon thread that is abandoned (and stops at its next read)
        once the deadline has passed."""
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def read() -> None:
            try:
                outcome["answer"] = self._read(method, path, deadline, **kwargs)
            except Exception as e:  # handed to the caller's thread below
                outcome["error"] = e
            finally:
                done.set()

        threading.Thread(target=read, name="veil-request", daemon=True).start()
        if not done.wait(max(deadline - time.monotonic(), 0.0)):
            raise self._too_slow()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["answer"]

    def _read(self, method: str, path: str, deadline: float, **kwargs: Any) -> Answer:
        import httpx

        try:
            with self.http.stream(method, path, **kwargs) as response:
                self._check_encoding(response)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise self._too_big(response.status_code)
                body = bytearray()
                for piece in _raw_pieces(response):
                    body += piece
                    if len(body) > self.max_response_bytes:
                        raise self._too_big(response.status_code)
                    if time.monotonic() > deadline:
                        raise self._too_slow()
                return Answer(response.status_code, bytes(body), dict(response.headers))
        except httpx.TimeoutException:
            raise self._too_slow() from None
        except (httpx.RemoteProtocolError, httpx.DecodingError) as e:
            raise self.bad(f"not a valid HTTP answer ({str(e)[:120]})") from None
        except httpx.HTTPError as e:
            raise ConnectionError(f"cannot reach the veil server at {self.server}: "
                                  f"{str(e) or type(e).__name__}") from None

    def _check_encoding(self, response: Any) -> None:
        """Refuses, before a byte of the body is read, an answer in any Content-Encoding but
        identity: httpx would inflate it (a 2 KB gzip bomb is a gigabyte) before the size cap
        could count it. The client asks for identity only."""
        encoding = response.headers.get("content-encoding", "identity")
        layers = [e.strip().lower() for e in encoding.split(",")]
        if any(e not in ("identity", "") for e in layers):
            raise self.bad(f"the answer is compressed (Content-Encoding "
                           f"'{encoding[:40]}'), which this client refuses unread; it asks "
                           "for identity", response.status_code)  # ServerError escapes it

    def _too_big(self, status: int) -> ServerError:
        return self.bad(f"the answer is larger than the client's cap of "
                        f"{self.max_response_bytes:,} bytes; stopped reading", status)

    def _too_slow(self) -> ServerError:
        return ServerError(0, "timeout", f"no complete answer within {self.request_timeout:g} s "
                           "(request_timeout); stopped waiting", self.server)


def _raw_pieces(response: Any) -> Iterable[bytes]:
    """The body as sent (never inflated: only identity gets this far). An in-memory answer
    (a test transport) is already read whole, so httpx only iterates its bytes."""
    return response.iter_bytes() if response.is_stream_consumed else response.iter_raw()


def retry_after_seconds(value: str | None) -> float:
    """A 429's Retry-After in seconds (a number; an HTTP date or nothing: 1 s), capped."""
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER) if math.isfinite(seconds) else 1.0
