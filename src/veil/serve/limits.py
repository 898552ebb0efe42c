"""Limits on what one connection may hold: plain data, importable without uvicorn."""

from __future__ import annotations

from dataclasses import dataclass


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
        if not self.head_timeout_s > 0:
            raise ValueError(f"head_timeout_s must be positive, got {self.head_timeout_s}")
