"""veil's own protocol: `POST /v1/classify`, 8-bit obfuscated PNGs as multipart file fields named
`files`, answered with each image's top-k labels as JSON. The codec (the multipart body in, the
predictions out) and the route; `v2.py` is the Open Inference Protocol beside it."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.answers import ranked
from ..core.wire import CLASSIFY, FIELD
from .auth import require_token
from .backend import Backend, classifier_info
from .config import ServerConfig
from .dataplane import DataPlane
from .errors import ApiError
from .multipart import Part, split_simple
from .schemas import ERRORS, ClassifyResponse
from .validation import decode_png


def add_v1_routes(app: FastAPI, predictor: Backend, config: ServerConfig,
                  plane: DataPlane) -> None:
    """POST /v1/classify: the token, top_k, the images, one batched forward pass."""
    classifier = classifier_info(predictor)
    n_classes = len(predictor.classes)
    default_top_k = min(config.default_top_k, n_classes)

    async def classify(request: Request) -> JSONResponse:
        with plane.arriving():
            top_k = _top_k(request, default_top_k, n_classes)
            raws, images = await read_images(request, await request.body(), config,
                                             predictor.image_size)
        probs = await plane.classify(images, raws)
        return JSONResponse({"predictions": [ranked(i, p, predictor.classes, top_k)
                                             for i, p in enumerate(probs)],
                             "classifier": classifier})

    app.add_api_route(CLASSIFY, classify, methods=["POST"], response_model=ClassifyResponse,
                      responses=ERRORS, dependencies=require_token(config.token),
                      openapi_extra=_request_spec(config.max_images, n_classes, default_top_k),
                      summary="Classify one or more 8-bit obfuscated PNGs")


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


async def read_images(request: Request, body: bytes, config: ServerConfig,
                      size: tuple[int, int]) -> tuple[list[bytes], np.ndarray]:
    """The PNGs uploaded in `body`, raw and decoded to uint8 (N, H, W, 3); ApiError when
    invalid."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "not_multipart", f"send the images as multipart/form-data file "
                                             f"fields named '{FIELD}'")
    parts = split_simple(body, content_type)
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
