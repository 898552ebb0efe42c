"""The veil HTTP server: a frozen classifier behind FastAPI, fed 8-bit obfuscated PNGs.

Endpoints: `POST /v1/classify` (multipart file fields named `files`), `GET /healthz`,
`GET /metrics` (Prometheus text), the Open Inference Protocol under `/v2` (serve/v2.py) and
the OpenAPI document at `/openapi.json` (`/docs`).

The server speaks plain HTTP: put TLS in front of it (a reverse proxy such as Caddy or nginx)
whenever it leaves the machine, and set a bearer token. Received images are decoded in memory
(the body size is capped below the multipart spooling threshold, so nothing touches the disk)
and are never logged.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.wire import CLASSIFY, FIELD
from .auth import auth_docs, bearer_check
from .backend import Backend, OnReceive
from .batching import MicroBatcher
from .config import ROUTES, ServerConfig
from .errors import ApiError, add_error_handlers
from .middleware import Endpoint, GuardMiddleware, mark_arrived
from .multipart import Part, split_simple
from .prometheus import MEDIA_TYPE as METRICS_MEDIA_TYPE
from .prometheus import Metrics
from .schemas import ERRORS, ClassifyResponse, Health
from .v2 import add_v2_routes, make_infer, model_paths, served_model, served_paths
from .validation import decode_png


# --- the app -----------------------------------------------------------------------------------
def create_app(predictor: Backend, config: ServerConfig | None = None,
               on_receive: OnReceive | None = None) -> FastAPI:
    """The ASGI app. `on_receive(raw_pngs, images)` sees every accepted upload (tests only)."""
    config = config or ServerConfig()
    metrics = Metrics()
    metrics.watch_inference(lambda: predictor.restarts, lambda: predictor.timeouts)
    batcher = MicroBatcher(predictor, config.max_batch, config.max_wait_ms, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    # redirect_slashes off: `POST .../infer/` is a 404 naming the path, not an empty 307
    app = FastAPI(title="veil", version=_version(), lifespan=lifespan, redirect_slashes=False,
                  description="Classifies 8-bit obfuscated images with a frozen classifier. "
                              "Put TLS in front of this server.")
    app.state.predictor, app.state.config, app.state.metrics = predictor, config, metrics
    app.state.batcher = batcher
    classify = make_classify(predictor, config, batcher, on_receive)
    infer = make_infer(predictor, config, batcher, on_receive)
    v2 = model_paths(served_model(predictor))
    add_error_handlers(app, metrics)
    app.add_middleware(GuardMiddleware, config=config, metrics=metrics, batcher=batcher,
                       direct={CLASSIFY: classify, v2["infer"]: infer,
                               v2["infer_versioned"]: infer},
                       routes=ROUTES | served_paths(served_model(predictor)))
    _add_routes(app, predictor, config, metrics, classify)
    add_v2_routes(app, predictor, config, infer)
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
            mark_arrived(request)
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
                      responses=ERRORS, dependencies=auth_docs(config.token),
                      openapi_extra=spec, summary="Classify one or more 8-bit obfuscated PNGs")

    @app.get("/healthz", response_model=Health, summary="Liveness and what is served",
             responses={503: {"model": Health}})
    async def healthz() -> JSONResponse:
        # an inference process that is being replaced (dead or stuck) makes the server degraded
        inference = predictor.state
        body = {"status": "ok" if inference == "ok" else "degraded", "inference": inference,
                "classifier": classifier, "classes": predictor.classes,
                "image_size": list(predictor.image_size), "max_images": config.max_images,
                "max_batch": config.max_batch, "auth": bool(config.token)}
        return JSONResponse(body, status_code=200 if inference == "ok" else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=METRICS_MEDIA_TYPE)


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


def _version() -> str:
    from ..core.version import VERSION as __version__

    return __version__
