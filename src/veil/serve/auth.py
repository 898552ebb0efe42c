"""The bearer token: checked in constant time, and described in the OpenAPI document."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from .errors import ApiError


def auth_docs(token: str | None) -> list[Any]:
    """The bearer scheme in the OpenAPI document (the endpoint checks the token itself)."""
    scheme = HTTPBearer(auto_error=False, description="the server's bearer token")
    return [Depends(scheme)] if token else []


def bearer_check(token: str | None) -> Callable[[Request], None]:
    """Raises a 401 ApiError unless the request carries `Authorization: Bearer <token>`."""
    expected = token.encode() if token else None

    def check(request: Request) -> None:
        if expected is None:
            return
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer ...)")
        if not hmac.compare_digest(credentials.strip().encode(), expected):
            raise ApiError(401, "unauthorized", "invalid bearer token")

    return check
