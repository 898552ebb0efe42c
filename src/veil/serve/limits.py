"""Limits on what one connection may hold: plain data, importable without uvicorn. Also `flag`,
how a setting of the server's dataclasses (here and in config.py) says that `veil serve` takes
it as a command-line option, with its help: serve/cli.py derives the option from the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_SECONDS = 86_400.0  # a timeout of more than a day guards nothing
MAX_WAIT_MS = 1_000.0  # a request waiting over a second for others to join its batch: a typo
INFERENCE_TIMEOUT_S = 10.0  # a batch slower than this in the inference process: stuck


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


def flag(default: Any, help: str) -> Any:
    """A dataclass field that `veil serve` takes as the option --NAME (its name, dashed, less
    a trailing _s), with this help and the field's default."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = flag(32 * 1024, "largest request head, request line and headers "
                                            "(answered 431)")
    max_headers: int = flag(100, "most header fields per request (answered 431)")
    # connecting (or a request's first byte) to its last header
    head_timeout_s: float = flag(10.0, "seconds a client may take to send a request head "
                                       "(answered 408 and closed)")
    max_connections: int = flag(1024, "open connections in all (beyond: 503)")  # uvicorn's
    max_connections_per_host: int = flag(128, "open connections from one client address "
                                              "(beyond: 503 and closed)")

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "max_connections",
                     "max_connections_per_host"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_seconds("head_timeout_s", self.head_timeout_s)
