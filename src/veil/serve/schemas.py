"""Response models: what the OpenAPI document promises each endpoint answers (the shapes
themselves are the wire contract both sides share: core/answers.py)."""

from __future__ import annotations

from ..core.answers import ClassifyResponse, ErrorBody, Health, V2ErrorBody

__all__ = ["ERRORS", "V2_ERRORS", "ClassifyResponse", "Health"]

_STATUSES = (400, 401, 408, 413, 415, 422)
ERRORS = {s: {"model": ErrorBody} for s in _STATUSES}
V2_ERRORS = {s: {"model": V2ErrorBody} for s in (*_STATUSES, 404)}
