"""What a running server is configured with, and its routes. Each setting is declared once, here
(or in limits.py); `veil serve` derives its options from the fields marked `flag`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.formparsers import MultiPartParser

from ..core.wire import CLASSIFY, HEALTH
from .limits import MAX_WAIT_MS, check_seconds, flag

# where the classifier runs: a child process (its forward pass never waits for the event loop's
# GIL) or a thread of the server's process
InferenceMode = Literal["process", "thread"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]

ROUTES = {CLASSIFY, HEALTH, "/metrics", "/openapi.json", "/docs", "/redoc"}
# with a token set these need it too (they show limits, error counts and the API); /healthz stays
# open for load balancers and the edge client's first contact
TOKEN_GUARDED = {"/metrics", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}


@dataclass(frozen=True)
class ServerConfig:
    max_batch: int = flag(32, "most images per forward pass")
    max_wait_ms: float = flag(2.0, "longest a request waits for others to join its batch")
    max_images: int = flag(64, "most images per request")
    max_body_bytes: int = flag(1 << 20, "largest request body")
    body_timeout_s: float = 10.0
    default_top_k: int = 3
    token: str | None = None
    public_metrics: bool = flag(False, "with a token set, still serve /metrics and the API docs "
                                       "without it")

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
