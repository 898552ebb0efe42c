"""The bearer token: checked in constant time, by a route dependency that the OpenAPI document
describes, and by the guard in front of the documentation routes."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBearer

from .errors import ApiError


def require_token(token: str | None) -> list[Any]:
    """The route dependency that checks the bearer token (a 401 ApiError without it) and puts
    the scheme in the OpenAPI document; none when the server has no token."""
    if not token:
        return []
    scheme = Security(HTTPBearer(auto_error=False, description="the server's bearer token"))
    check = bearer_check(token)

    async def authorized(request: Request, _: Any = scheme) -> None:
        check(request)

    return [Depends(authorized)]


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
