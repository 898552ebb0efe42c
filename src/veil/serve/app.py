"""The veil HTTP server: a frozen classifier behind FastAPI, fed 8-bit obfuscated PNGs.

Endpoints: `POST /v1/classify` (multipart file fields named `files`), `GET /healthz`,
`GET /metrics` (Prometheus text) and the OpenAPI document at `/openapi.json` (`/docs`).

The server speaks plain HTTP: put TLS in front of it (a reverse proxy such as Caddy or nginx)
whenever it leaves the machine, and set a bearer token. Received images are decoded in memory
(the body size is capped below the multipart spooling threshold, so nothing touches the disk)
and are never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser

from .batching import MicroBatcher
from .metrics import Metrics
from .multipart import Part, split_simple
from .validation import ApiError, decode_png
from .worker import InferenceTimeout

if TYPE_CHECKING:  # the app runs without torch when the classifier runs in a child process
    from .inference import Predictor
    from .worker import InferenceProcess

    Backend = Predictor | InferenceProcess

CLASSIFY = "/v1/classify"
ROUTES = {CLASSIFY, "/healthz", "/metrics", "/openapi.json", "/docs", "/redoc"}
# with a token set these need it too (they show limits, error counts and the API); /healthz stays
# open for load balancers and the edge client's first contact
TOKEN_GUARDED = {"/metrics", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}
FIELD = "files"
log = logging.getLogger("veil.serve")
OnReceive = Callable[[list[bytes], np.ndarray], None]
Endpoint = Callable[[Request], Awaitable[JSONResponse]]


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
        if self.max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {self.max_images}")
        if not 1024 <= self.max_body_bytes <= MultiPartParser.spool_max_size:
            raise ValueError(f"max_body_bytes must be between 1024 and "
                             f"{MultiPartParser.spool_max_size} (uploads must stay in memory)")
        if self.body_timeout_s <= 0:
            raise ValueError("body_timeout_s must be positive")


# --- response models (for the OpenAPI document) ------------------------------------------------
class TopK(BaseModel):
    label: str
    class_index: int
    probability: float


class PredictionOut(BaseModel):
    index: int
    label: str
    class_index: int
    confidence: float
    top_k: list[TopK]


class ClassifierInfo(BaseModel):
    model_name: str
    sha256: str


class ClassifyResponse(BaseModel):
    predictions: list[PredictionOut]
    classifier: ClassifierInfo


class ErrorBody(BaseModel):
    error: str
    detail: str


class Health(BaseModel):
    status: str
    inference: str
    classifier: ClassifierInfo
    classes: list[str]
    image_size: list[int]
    max_images: int
    max_batch: int
    auth: bool


ERRORS = {s: {"model": ErrorBody} for s in (400, 401, 408, 413, 415, 422)}


# --- the app -----------------------------------------------------------------------------------
def create_app(predictor: Backend, config: ServerConfig | None = None,
               on_receive: OnReceive | None = None) -> FastAPI:
    """The ASGI app. `on_receive(raw_pngs, images)` sees every accepted upload (tests only)."""
    config = config or ServerConfig()
    metrics = Metrics()
    metrics.inference_restarts = lambda: getattr(predictor, "restarts", 0)
    metrics.inference_timeouts = lambda: getattr(predictor, "timeouts", 0)
    batcher = MicroBatcher(predictor, config.max_batch, config.max_wait_ms, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="veil", version=_version(), lifespan=lifespan,
                  description="Classifies 8-bit obfuscated images with a frozen classifier. "
                              "Put TLS in front of this server.")
    app.state.predictor, app.state.config, app.state.metrics = predictor, config, metrics
    app.state.batcher = batcher
    classify = make_classify(predictor, config, batcher, on_receive)
    _add_error_handlers(app, metrics)
    app.add_middleware(GuardMiddleware, config=config, metrics=metrics, batcher=batcher,
                       direct={CLASSIFY: classify})
    _add_routes(app, predictor, config, metrics, classify)
    return app


def _classifier_info(predictor: Backend) -> dict[str, str]:
    return {"model_name": str(predictor.info.get("model_name", "unknown")),
            "sha256": str(predictor.info.get("sha256", ""))}


def make_classify(predictor: Backend, config: ServerConfig, batcher: MicroBatcher,
                  on_receive: OnReceive | None) -> Endpoint:
    """The POST /v1/classify endpoint: auth, top_k, images, one batched forward pass."""
    classifier = _classifier_info(predictor)
    n_classes = len(predictor.classes)
    default_top_k = min(config.default_top_k, n_classes)
    check_token = bearer_check(config.token)

    async def classify(request: Request) -> JSONResponse:
        check_token(request)
        try:
            top_k = _top_k(request, default_top_k, n_classes)
            raws, images = await read_images(request, config, predictor.image_size)
        finally:
            _arrived(request)
        if on_receive is not None:
            on_receive(raws, images)
        probs = await batcher.submit(images)
        return JSONResponse({"predictions": [_prediction(i, p, predictor.classes, top_k)
                                             for i, p in enumerate(probs)],
                             "classifier": classifier})

    return classify


def _add_routes(app: FastAPI, predictor: Backend, config: ServerConfig, metrics: Metrics,
                classify: Endpoint) -> None:
    classifier = _classifier_info(predictor)
    n_classes = len(predictor.classes)
    spec = _request_spec(config.max_images, n_classes, min(config.default_top_k, n_classes))
    app.add_api_route(CLASSIFY, classify, methods=["POST"], response_model=ClassifyResponse,
                      responses=ERRORS, dependencies=_auth_docs(config.token),
                      openapi_extra=spec, summary="Classify one or more 8-bit obfuscated PNGs")

    @app.get("/healthz", response_model=Health, summary="Liveness and what is served",
             responses={503: {"model": Health}})
    async def healthz() -> JSONResponse:
        # an inference process that is being replaced (dead or stuck) makes the server degraded
        inference = getattr(predictor, "state", "ok")
        body = {"status": "ok" if inference == "ok" else "degraded", "inference": inference,
                "classifier": classifier, "classes": predictor.classes,
                "image_size": list(predictor.image_size), "max_images": config.max_images,
                "max_batch": config.max_batch, "auth": bool(config.token)}
        return JSONResponse(body, status_code=200 if inference == "ok" else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")


def _request_spec(max_images: int, n_classes: int, default_top_k: int) -> dict[str, Any]:
    """The OpenAPI parts FastAPI cannot infer: the multipart body and the top_k parameter
    (both read by hand, which costs far less per request than FastAPI's validation)."""
    files = {"type": "array", "minItems": 1, "maxItems": max_images,
             "items": {"type": "string", "format": "binary"},
             "description": "8-bit RGB PNG images of the size the classifier expects"}
    schema = {"type": "object", "required": [FIELD], "properties": {FIELD: files}}
    top_k = {"name": "top_k", "in": "query", "required": False,
             "description": "labels per image",
             "schema": {"type": "integer", "minimum": 1, "maximum": n_classes,
                        "default": default_top_k}}
    return {"parameters": [top_k],
            "requestBody": {"required": True,
                            "content": {"multipart/form-data": {"schema": schema}}}}


def _top_k(request: Request, default: int, n_classes: int) -> int:
    raw = request.query_params.get("top_k")
    if raw is None:
        return default
    # the length check first: int() refuses strings of over 4,300 digits (a 500, not a 422)
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= n_classes):
        raise ApiError(422, "invalid_parameter", f"top_k must be an integer from 1 to "
                                                 f"{n_classes}, got {raw[:20]!r}")
    return int(raw)


def _prediction(index: int, probs: np.ndarray, classes: list[str], top_k: int) -> dict[str, Any]:
    order = np.argsort(-probs, kind="stable")[:top_k]
    top = [{"label": classes[c], "class_index": int(c), "probability": float(probs[c])}
           for c in order]
    return {"index": index, "label": top[0]["label"], "class_index": top[0]["class_index"],
            "confidence": top[0]["probability"], "top_k": top}


async def read_images(request: Request, config: ServerConfig, size: tuple[int, int]
                      ) -> tuple[list[bytes], np.ndarray]:
    """The uploaded PNGs, raw and decoded to uint8 (N, H, W, 3); ApiError when invalid."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "not_multipart", f"send the images as multipart/form-data file "
                                             f"fields named '{FIELD}'")
    parts = split_simple(request.scope.get("veil.body", b""), content_type)
    if parts is None:
        parts = await _parse_form(request, config)
    raws = [_file_bytes(name, is_file, data) for name, is_file, data in parts]
    if not raws:
        raise ApiError(400, "no_images", f"no images: send one or more PNG files in the "
                                         f"'{FIELD}' field")
    if len(raws) > config.max_images:
        raise ApiError(413, "too_many_images", f"at most {config.max_images} images per request")
    arrays = [decode_png(raw, size, f"{FIELD}[{i}]") for i, raw in enumerate(raws)]
    return raws, np.stack(arrays)


async def _parse_form(request: Request, config: ServerConfig) -> list[Part]:
    """Starlette's full multipart parser (in memory: bodies are capped below its spool size)."""
    try:
        form = await request.form(max_files=config.max_images, max_fields=8)
    except StarletteHTTPException as e:
        if "Too many files" in str(e.detail):
            raise ApiError(413, "too_many_images",
                           f"at most {config.max_images} images per request") from None
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {e.detail}") from None
    try:
        return [(key, not isinstance(value, str),
                 value.encode() if isinstance(value, str) else await value.read())
                for key, value in form.multi_items()]
    finally:
        await form.close()


def _file_bytes(name: str, is_file: bool, data: bytes) -> bytes:
    if name != FIELD:
        raise ApiError(400, "unexpected_field", f"unexpected form field {name[:40]!r}; send "
                                                f"the images as file fields named '{FIELD}'")
    if not is_file:
        raise ApiError(400, "not_a_file", f"'{FIELD}' must hold file uploads, not text")
    return data


def _auth_docs(token: str | None) -> list[Any]:
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


# --- errors ------------------------------------------------------------------------------------
RETRY_AFTER_S = 2  # what a 503 tells clients: a replaced inference process loads in seconds


def error_response(metrics: Metrics, status: int, code: str, detail: str) -> JSONResponse:
    metrics.errors[code] += 1
    headers = ({"WWW-Authenticate": "Bearer"} if status == 401 else
               {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None)
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
              405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


def _add_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return error_response(metrics, e.status, e.code, e.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return error_response(metrics, e.status_code, HTTP_CODES.get(e.status_code, "http_error"),
                              str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                           for err in e.errors())
        return error_response(metrics, 422, "invalid_parameter", detail)

    @app.exception_handler(InferenceTimeout)
    async def timed_out(_: Request, e: InferenceTimeout) -> JSONResponse:
        return error_response(metrics, 503, "inference_timeout", str(e))

    @app.exception_handler(Exception)
    async def internal(_: Request, e: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(e).__name__, e)
        return error_response(metrics, 500, "internal_error", "internal server error")


# --- body limit, timing, arrival tracking ------------------------------------------------------
class GuardMiddleware:
    """Reads the whole body first (bounded in size and time), counts and times every request,
    and hands the `direct` routes their requests without FastAPI's routing."""

    def __init__(self, app: Any, config: ServerConfig, metrics: Metrics, batcher: MicroBatcher,
                 direct: dict[str, Endpoint] | None = None) -> None:
        self.app, self.config, self.metrics, self.batcher = app, config, metrics, batcher
        self.direct = direct or {}
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

        if scope["method"] == "POST" and scope["path"] == CLASSIFY:
            scope["veil.arrival"] = _Arrival(self.batcher)
        try:
            await self._handle(scope, receive, send_tracked)
        except Exception:
            status[0] = status[0] or 500
            raise
        finally:
            if "veil.arrival" in scope:
                scope["veil.arrival"].done()
            route = scope["path"] if scope["path"] in ROUTES else "other"
            self.metrics.record_request(scope["method"], route, status[0] or 499,
                                        time.perf_counter() - start)

    async def _handle(self, scope: dict, receive: Callable, send: Callable) -> None:
        try:
            if scope["path"] in TOKEN_GUARDED and not self.config.public_metrics:
                self.check_token(Request(scope))
            body = await self._read_body(scope, receive)
        except ApiError as e:
            response = error_response(self.metrics, e.status, e.code, e.detail)
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        if body is None:  # the client went away mid-upload
            self.metrics.errors["client_disconnected"] += 1
            return
        scope["veil.body"] = body
        endpoint = self.direct.get(scope["path"]) if scope["method"] == "POST" else None
        if endpoint is None:
            await self.app(scope, _replay(body, receive), send)
        else:
            await self._call_direct(endpoint, scope, _replay(body, receive), send)

    async def _call_direct(self, endpoint: Endpoint, scope: dict, receive: Callable,
                           send: Callable) -> None:
        """POST /v1/classify goes straight to its endpoint: FastAPI's per-request machinery
        (routing, dependency solving, telemetry) would cost about a fifth of the server's CPU
        per image, and the endpoint validates its own input. FastAPI still documents the
        route, and would serve it the same way."""
        try:
            response = await endpoint(Request(scope, receive))
        except ApiError as e:
            response = error_response(self.metrics, e.status, e.code, e.detail)
        except InferenceTimeout as e:
            response = error_response(self.metrics, 503, "inference_timeout", str(e))
        except Exception as e:  # answer it here: re-raised, it would drop the connection
            log.error("internal error: %s: %s", type(e).__name__, e)
            response = error_response(self.metrics, 500, "internal_error",
                                      "internal server error")
        await response(scope, receive, send)

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


class _Arrival:
    """Counts a classify request as 'on its way' for the batcher until it is submitted."""

    def __init__(self, batcher: MicroBatcher) -> None:
        self.batcher, self.pending = batcher, True
        batcher.arriving += 1

    def done(self) -> None:
        if self.pending:
            self.pending = False
            self.batcher.arriving -= 1


def _arrived(request: Request) -> None:
    arrival = request.scope.get("veil.arrival")
    if arrival is not None:
        arrival.done()


def _replay(body: bytes, receive: Callable) -> Callable:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _version() -> str:
    from .. import __version__

    return __version__
