"""Every exception the server answers, with its status, in one place: `ApiError` (what is wrong
with a request), `ModelFault` and `InferenceTimeout` (the served model's), and the handlers that
turn each into one JSON shape, `{"error": code, "detail": text}`, counted in /metrics; under
/v2 the Open Inference Protocol's, `{"error": text}` (with veil's `code` beside it). Both shapes
are declared in core/answers.py, where the edge reads them."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.answers import error_body
from .prometheus import Metrics


class ApiError(Exception):
    """An error answered to the client as JSON {"error": code, "detail": message}."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class InferenceTimeout(RuntimeError):
    """The inference process did not answer a batch in time; it has been replaced."""


class ModelFault(RuntimeError):
    """The classifier itself answered wrongly (outputs not finite, or not one per class): a
    fault of the served model, not of the images sent."""


log = logging.getLogger("veil.serve")
RETRY_AFTER_S = 2  # what a 503 tells clients: a replaced inference process loads in seconds


def is_v2(path: str) -> bool:
    """Whether a path asks for the Open Inference Protocol (repeated slashes read as one)."""
    path = "/" + path.lstrip("/")
    return path == "/v2" or path.startswith(("/v2/", "/v2?"))


def error_response(metrics: Metrics, status: int, code: str, detail: str,
                   path: str = "") -> JSONResponse:
    metrics.record_error(code)
    headers = ({"WWW-Authenticate": "Bearer"} if status == 401 else
               {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None)
    return JSONResponse(error_body(code, detail, is_v2(path)), status_code=status,
                        headers=headers)


HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
              405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


def add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return error_response(metrics, e.status_code, HTTP_CODES.get(e.status_code, "http_error"),
                              str(e.detail), request.scope["path"])

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                           for err in e.errors())
        return error_response(metrics, 422, "invalid_parameter", detail, request.scope["path"])

    async def failed(request: Request, e: Exception) -> JSONResponse:
        return error_response(metrics, *error_for(e), request.scope["path"])

    # any other exception is answered by the GuardMiddleware in front (middleware.py)
    for kind in (ApiError, InferenceTimeout, ModelFault):
        app.add_exception_handler(kind, failed)


def error_for(e: Exception) -> tuple[int, str, str]:
    """(status, code, detail) for an exception raised while answering a request."""
    if isinstance(e, ApiError):
        return e.status, e.code, e.detail
    if isinstance(e, InferenceTimeout):
        return 503, "inference_timeout", str(e)
    if isinstance(e, ModelFault):
        log.error("model fault: %s", e)
        return 500, "model_fault", str(e)
    log.error("internal error: %s: %s", type(e).__name__, e)
    return 500, "internal_error", "internal server error"
