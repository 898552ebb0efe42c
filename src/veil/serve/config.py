"""What a running server is configured with, and its routes."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.formparsers import MultiPartParser

from ..core.wire import CLASSIFY, HEALTH
from .limits import MAX_WAIT_MS, check_seconds

ROUTES = {CLASSIFY, HEALTH, "/metrics", "/openapi.json", "/docs", "/redoc"}
# with a token set these need it too (they show limits, error counts and the API); /healthz stays
# open for load balancers and the edge client's first contact
TOKEN_GUARDED = {"/metrics", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}


@dataclass(frozen=True)
class ServerConfig:
    max_batch: int = 32
    max_wait_ms: float = 2.0
    max_images: int = 64
    max_body_bytes: int = 1 << 20
    body_timeout_s: float = 10.0
    default_top_k: int = 3
    token: str | None = None
    public_metrics: bool = False  # with a token: let /metrics and the API docs be read without

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if not 0 <= self.max_wait_ms <= MAX_WAIT_MS:  # nan too
            raise ValueError(f"max_wait_ms must be from 0 to {MAX_WAIT_MS:g}, got "
                             f"{self.max_wait_ms!r}")
        if self.max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {self.max_images}")
        if not 1024 <= self.max_body_bytes <= MultiPartParser.spool_max_size:
            raise ValueError(f"max_body_bytes must be between 1024 and "
                             f"{MultiPartParser.spool_max_size} (uploads must stay in memory)")
        check_seconds("body_timeout_s", self.body_timeout_s)
