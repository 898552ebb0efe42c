"""In front of the routes: the body read whole (bounded in size and time) and every request counted
and timed. The classifying POSTs (/v1/classify, /v2/.../infer) count as arriving for the batcher
while their body is read, so a batch waits for an image that is still being uploaded (the route
counts it on while it decodes the images: dataplane.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from fastapi import Request

from .auth import bearer_check
from .config import ROUTES, TOKEN_GUARDED, ServerConfig
from .dataplane import DataPlane
from .errors import ApiError, error_for, error_response
from .prometheus import Metrics

log = logging.getLogger("veil.serve")


class GuardMiddleware:
    """Reads the whole body first (bounded in size and time) and counts and times every
    request; the routes (FastAPI's, the only dispatch) are handed the body as it came (they
    read it with `await request.body()`). `routes` are the paths /metrics labels by name (the
    rest as "other")."""

    def __init__(self, app: Any, config: ServerConfig, metrics: Metrics, plane: DataPlane,
                 classifying: set[str] = frozenset(), routes: set[str] = ROUTES) -> None:
        self.app, self.config, self.metrics, self.plane = app, config, metrics, plane
        self.classifying, self.routes = classifying, routes
        self.check_token = bearer_check(config.token)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [0]

        async def send_tracked(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_tracked)
        except Exception as e:
            if status[0]:  # the answer has begun: nothing left to do but drop the connection
                raise
            # answered here: re-raised to Starlette's last-resort handler, the 500 would be sent
            # and the connection dropped, failing the client's next request on it
            await error_response(self.metrics, *error_for(e), scope["path"])(
                scope, receive, send_tracked)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.metrics.record_request(scope["method"], route, status[0] or 499,
                                        time.perf_counter() - start)

    async def _handle(self, scope: dict, receive: Callable, send: Callable) -> None:
        classifying = scope["path"] in self.classifying
        uploading = classifying and scope["method"] == "POST"
        try:
            with self.plane.arriving() if uploading else nullcontext():
                guarded = scope["path"] in TOKEN_GUARDED and not self.config.public_metrics
                # a classifying POST is refused from its headers, before its body is waited for
                # (its route's dependency checks the token again, and documents it)
                if guarded or classifying:
                    self.check_token(Request(scope))
                body = await self._read_body(scope, receive)
        except ApiError as e:
            response = error_response(self.metrics, e.status, e.code, e.detail, scope["path"])
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        if body is None:  # the client went away mid-upload
            self.metrics.record_error("client_disconnected")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, scope: dict, receive: Callable) -> bytes | None:
        limit = self.config.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise ApiError(400, "bad_content_length", "Content-Length is not a number")
            if int(declared) > limit:
                raise ApiError(413, "body_too_large", f"request body of {int(declared)} bytes "
                                                      f"exceeds the limit of {limit} bytes")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.body_timeout_s
        chunks, size = [], 0
        while True:
            message = await self._receive_before(receive, deadline - loop.time())
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"request body exceeds the limit of "
                                                      f"{limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _receive_before(receive: Callable, remaining: float) -> dict:
        try:
            return await asyncio.wait_for(receive(), max(remaining, 0.001))
        except asyncio.TimeoutError:
            raise ApiError(408, "body_timeout", "the request body did not arrive in full in time "
                                                "(truncated upload?)") from None


def _replay(body: bytes, receive: Callable) -> Callable:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
