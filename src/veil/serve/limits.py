"""Limits on what one connection may hold: plain data, importable without uvicorn."""

from __future__ import annotations

from dataclasses import dataclass

MAX_SECONDS = 86_400.0  # a timeout of more than a day guards nothing
MAX_WAIT_MS = 1_000.0  # a request waiting over a second for others to join its batch: a typo


def check_seconds(name: str, value: float, most: float = MAX_SECONDS) -> None:
    """A timeout must be a number of seconds above 0 and at most `most`: nan, inf, 0 and
    negative values are refused (inf would switch the guard off, nan fail every request)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= most:
        raise ValueError(f"{name} must be positive and finite (at most {most:g} s), "
                         f"got {value!r}")


def check_port(port: int) -> int:
    """A TCP port to listen on: 1 to 65535 (larger ones wrap around, modulo 65536)."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port}: must be from 1 to 65535")
    return port


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 32 * 1024  # request line + headers, as received
    max_headers: int = 100
    head_timeout_s: float = 10.0  # connecting (or a request's first byte) to its last header
    max_connections: int = 1024  # all clients together (uvicorn's limit_concurrency)
    max_connections_per_host: int = 128

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "max_connections",
                     "max_connections_per_host"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_seconds("head_timeout_s", self.head_timeout_s)
