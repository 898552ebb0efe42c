"""The Open Inference Protocol (KServe v2, as Triton speaks it) beside veil's own /v1.

    GET  /v2                                 server metadata (extensions)
    GET  /v2/health/live, /v2/health/ready   liveness, readiness
    GET  /v2/models/{model}[/versions/1]     model metadata: input, output tensors
    GET  /v2/models/{model}[/versions/1]/ready
    POST /v2/models/{model}[/versions/1]/infer

One input tensor, `images`: UINT8 [N, H, W, 3], the 8-bit obfuscated images, in JSON `data` or
as binary data after the JSON header (the binary tensor data extension: the header's length in
`Inference-Header-Content-Length`, the tensor's in `parameters.binary_data_size`). One output,
`probabilities`: FP32 [N, classes], in JSON or binary (`binary_data`), or with
`classification: K` the top K as BYTES "score:index:label" (the classification extension).
Errors are `{"error": message, "code": veil's code}`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..core.wire import HEADER_LENGTH, V2_INPUT, V2_MODEL_VERSION, V2_OUTPUT
from .auth import require_token
from .backend import Backend
from .config import ServerConfig
from .dataplane import DataPlane
from .errors import ApiError
from .schemas import V2_ERRORS

INPUT, OUTPUT, MODEL_VERSION = V2_INPUT, V2_OUTPUT, V2_MODEL_VERSION
EXTENSIONS = ["binary_tensor_data", "classification"]
MAX_JSON_DEPTH = 8  # [N][H][W][3] nests four deep; more is not an image
# parsing a request body or encoding an answer larger than this runs in a worker thread, so a
# big JSON tensor (64 images: 0.4 s) never holds up /healthz or other requests
OFF_LOOP_BYTES = 64 * 1024


def model_paths(model: str) -> dict[str, str]:
    """The paths of one served model, with and without its version."""
    base, versioned = f"/v2/models/{model}", f"/v2/models/{model}/versions/{MODEL_VERSION}"
    return {"metadata": base, "metadata_versioned": versioned,
            "ready": f"{base}/ready", "ready_versioned": f"{versioned}/ready",
            "infer": f"{base}/infer", "infer_versioned": f"{versioned}/infer"}


def model_metadata(model: str, image_size: tuple[int, int], n_classes: int) -> dict[str, Any]:
    h, w = image_size
    return {"name": model, "versions": [MODEL_VERSION], "platform": "pytorch",
            "inputs": [{"name": INPUT, "datatype": "UINT8", "shape": [-1, h, w, 3]}],
            "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, n_classes]}]}


@dataclass(frozen=True)
class Wanted:
    """One requested output: as binary data or JSON, the whole tensor or its top `classes`."""

    binary: bool
    classes: int = 0


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    images: np.ndarray  # uint8 (N, H, W, 3)
    outputs: tuple[Wanted, ...]


# --- the request -------------------------------------------------------------------------------
def parse_infer(body: bytes, header_length: str | None, image_size: tuple[int, int],
                max_images: int, n_classes: int) -> InferRequest:
    """An infer request's body -> its images and wanted outputs, or an ApiError naming the
    first thing wrong with it."""
    head, binary = _split_body(body, header_length)
    request = _json_object(head, header_length)
    if request.get("id") is not None and not isinstance(request["id"], str):
        raise ApiError(400, "invalid_request", "'id' must be a string")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ApiError(400, "invalid_request", f"'inputs' must hold exactly one tensor, "
                                               f"'{INPUT}'")
    images = _images(inputs[0], binary, image_size, max_images)
    parameters = _parameters(request, "the request")
    outputs = _outputs(request.get("outputs"),
                       _flag(parameters, "binary_data_output", False, "the request"), n_classes)
    return InferRequest(request.get("id"), images, outputs)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not (header_length.isascii() and header_length.isdigit() and len(header_length) <= 12
            and 0 < int(header_length) <= len(body)):
        raise ApiError(400, "invalid_request", f"Inference-Header-Content-Length "
                                               f"{header_length[:20]!r} is not a length within "
                                               f"the {len(body)}-byte body")
    n = int(header_length)
    return body[:n], body[n:]


def _json_object(head: bytes, header_length: str | None) -> dict[str, Any]:
    try:
        request = json.loads(head)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, "invalid_json", _json_problem(e, header_length)) from None
    if not isinstance(request, dict):
        raise ApiError(400, "invalid_request", "the inference request must be a JSON object")
    return request


def _json_problem(error: Exception, header_length: str | None) -> str:
    """What to tell a client whose JSON header does not parse: with binary data, the length
    it declared for the header (or left out) is the likelier culprit."""
    if isinstance(error, ValueError) and "digits" in str(error):  # Python's int size limit
        return "the inference request holds an integer of more digits than any pixel or size"
    where = (f": {error.msg} at byte {error.pos}" if isinstance(error, json.JSONDecodeError)
             else " (not UTF-8 text)" if isinstance(error, UnicodeDecodeError) else "")
    if header_length is not None:
        return (f"the first {header_length} bytes (Inference-Header-Content-Length) are not a "
                f"JSON header{where}")
    if isinstance(error, UnicodeDecodeError) or "Extra data" in where:
        return (f"the inference request is not valid JSON{where}: binary data after the JSON "
                "needs an Inference-Header-Content-Length header")
    return f"the inference request is not valid JSON{where}"


def _flag(parameters: dict[str, Any], key: str, default: bool, what: str) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):  # the string "false" is true to Python
        raise ApiError(422, "invalid_parameter", f"{key} of {what} must be true or false, got "
                                                 f"{json.dumps(value)[:20]}")
    return value


def _parameters(entry: dict[str, Any], what: str) -> dict[str, Any]:
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ApiError(400, "invalid_request", f"the parameters of {what} must be an object")
    return parameters


def _images(tensor: dict[str, Any], binary: bytes, size: tuple[int, int],
            max_images: int) -> np.ndarray:
    name, shape = tensor.get("name"), tensor.get("shape")
    if name != INPUT:
        raise ApiError(400, "unknown_input", f"input {str(name)[:40]!r}: this model takes one "
                                             f"input, '{INPUT}'")
    if tensor.get("datatype") != "UINT8":
        raise ApiError(400, "wrong_datatype", f"input '{INPUT}' is UINT8 (8-bit obfuscated "
                                              f"images), got {str(tensor.get('datatype'))[:20]}")
    h, w = size
    if (not isinstance(shape, list) or len(shape) != 4
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            or shape[1:] != [h, w, 3] or shape[0] < 1):
        raise ApiError(422, "wrong_shape", f"input '{INPUT}' has shape {str(shape)[:60]}, the "
                                           f"classifier takes [N, {h}, {w}, 3]")
    if shape[0] > max_images:
        raise ApiError(413, "too_many_images", f"at most {max_images} images per request")
    size_bytes = _parameters(tensor, f"input '{INPUT}'").get("binary_data_size")
    if size_bytes is not None and "data" in tensor:
        raise ApiError(400, "invalid_request", f"input '{INPUT}' holds both JSON data and "
                                               "binary_data_size: send the pixels one way")
    if size_bytes is None:
        flat = _json_pixels(tensor.get("data"), math.prod(shape))
    else:
        flat = _binary_pixels(size_bytes, binary, math.prod(shape))
    return flat.reshape(shape)


def _binary_pixels(size_bytes: Any, binary: bytes, count: int) -> np.ndarray:
    if type(size_bytes) is not int:  # not a bool, a float or a string that equals count
        raise ApiError(400, "wrong_data_size", f"binary_data_size of input '{INPUT}' must be a "
                                               f"whole number of bytes, got "
                                               f"{json.dumps(size_bytes)[:20]}")
    if size_bytes != count or len(binary) != count:
        raise ApiError(400, "wrong_data_size", f"input '{INPUT}' of {count} bytes, but "
                                               f"binary_data_size is {str(size_bytes)[:20]} and "
                                               f"{len(binary)} bytes follow the JSON header")
    return np.frombuffer(binary, np.uint8)


def _json_pixels(data: Any, count: int) -> np.ndarray:
    flat = list(_flatten(data, 0)) if isinstance(data, list) else None
    if flat is None or len(flat) != count:
        raise ApiError(400, "wrong_data_size", f"input '{INPUT}' needs {count} values in "
                                               "'data' (or binary data)")
    if not all(type(v) is int and 0 <= v <= 255 for v in flat):
        raise ApiError(422, "not_8bit", f"input '{INPUT}' holds values that are not integers "
                                        "from 0 to 255")
    return np.asarray(flat, np.uint8)


def _flatten(data: list, depth: int):
    if depth > MAX_JSON_DEPTH:
        raise ApiError(400, "wrong_data_size", f"input '{INPUT}': 'data' nests too deep")
    for item in data:
        if isinstance(item, list):
            yield from _flatten(item, depth + 1)
        else:
            yield item


def _outputs(requested: Any, binary_default: bool, n_classes: int) -> tuple[Wanted, ...]:
    if requested is None:
        return (Wanted(binary_default),)
    if not isinstance(requested, list) or not requested:
        raise ApiError(400, "invalid_request", "'outputs' must be a non-empty list")
    wanted: list[Wanted] = []
    for entry in requested:  # stops at the first bad entry: a list of 31,000 costs nothing
        if not isinstance(entry, dict) or entry.get("name") != OUTPUT:
            name = entry.get("name") if isinstance(entry, dict) else entry
            raise ApiError(400, "unknown_output", f"output {str(name)[:40]!r}: this model "
                                                  f"has one output, '{OUTPUT}'")
        if wanted:  # each answered output costs memory and time: one answer per name
            raise ApiError(400, "repeated_output", f"output '{OUTPUT}' is asked for more than "
                                                   "once")
        parameters = _parameters(entry, f"output '{OUTPUT}'")
        classes = parameters.get("classification", 0)
        if isinstance(classes, bool) or not isinstance(classes, int) or not (
                0 <= classes <= n_classes):
            raise ApiError(422, "invalid_parameter", f"classification must be an integer from "
                                                     f"0 to {n_classes}")
        binary = _flag(parameters, "binary_data", binary_default, f"output '{OUTPUT}'")
        wanted.append(Wanted(binary, classes))
    return tuple(wanted)


# --- the answer --------------------------------------------------------------------------------
def infer_answer(request: InferRequest, probs: np.ndarray, classes: list[str],
                 model: str) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of the answer: the JSON header, then any binary outputs."""
    outputs, blobs = [], []
    for wanted in request.outputs:
        datatype, shape, values = _output_tensor(wanted, probs, classes)
        entry: dict[str, Any] = {"name": OUTPUT, "datatype": datatype, "shape": shape}
        if wanted.binary:
            blob = (_bytes_tensor(values) if datatype == "BYTES"
                    else np.ascontiguousarray(values, "<f4").tobytes())
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = values.ravel().tolist() if datatype == "FP32" else values
        outputs.append(entry)
    answer: dict[str, Any] = {"model_name": model, "model_version": MODEL_VERSION,
                              "outputs": outputs}
    if request.id is not None:
        answer["id"] = request.id
    head = json.dumps(answer, separators=(",", ":")).encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {"content-type": "application/octet-stream",
                                    HEADER_LENGTH: str(len(head))}


def _output_tensor(wanted: Wanted, probs: np.ndarray, classes: list[str]
                   ) -> tuple[str, list[int], Any]:
    if not wanted.classes:
        return "FP32", list(probs.shape), probs.astype(np.float32, copy=False)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :wanted.classes]
    labels = [[f"{float(p[c]):.9g}:{int(c)}:{classes[c]}" for c in row]
              for p, row in zip(probs, top, strict=True)]
    return "BYTES", [len(probs), wanted.classes], [s for row in labels for s in row]


def _bytes_tensor(strings: list[str]) -> bytes:
    """BYTES elements as binary data: each a 4-byte little-endian length, then its bytes."""
    parts = []
    for s in strings:
        raw = s.encode()
        parts += [len(raw).to_bytes(4, "little"), raw]
    return b"".join(parts)


# --- the routes --------------------------------------------------------------------------------
class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float | str] | None = None
    parameters: dict[str, int] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


def make_infer(predictor: Backend, config: ServerConfig,
               plane: DataPlane) -> Callable[[Request], Awaitable[Response]]:
    """POST /v2/models/{model}/infer: the tensor, one batched forward pass (the token is checked
    by the route's dependency)."""
    model = served_model(predictor)
    paths = model_paths(model)
    served = {paths["infer"], paths["infer_versioned"]}
    n_classes = len(predictor.classes)

    async def infer(request: Request) -> Response:
        with plane.arriving():
            if request.url.path not in served:
                raise _not_served(request.url.path)
            _check_uncompressed(request)
            body = await request.body()
            parsed = await _off_loop(len(body), parse_infer, body,
                                     request.headers.get(HEADER_LENGTH), predictor.image_size,
                                     config.max_images, n_classes)
        probs = await plane.classify(parsed.images)
        answer, headers = await _off_loop(_answer_bytes(parsed, probs), infer_answer, parsed,
                                          probs, predictor.classes, model)
        return Response(answer, headers=headers)

    return infer


def _check_uncompressed(request: Request) -> None:
    # every Content-Encoding header counts (one saying identity cannot hide a second)
    codings = [c.strip().lower() for v in request.headers.getlist("content-encoding")
               for c in v.split(",")]
    encoding = next((c for c in codings if c not in ("identity", "")), None)
    if encoding is not None:
        raise ApiError(415, "compressed_body", f"Content-Encoding {encoding[:20]!r}: "
                                               "send the request uncompressed")


async def _off_loop(size: int, work: Any, *args: Any) -> Any:
    """work(*args), in a worker thread when `size` bytes make it slow enough to stall the
    event loop."""
    return work(*args) if size <= OFF_LOOP_BYTES else await run_in_threadpool(work, *args)


def _answer_bytes(request: InferRequest, probs: np.ndarray) -> int:
    """A bound on the answer's size: one output (a repeated name is refused), at most a few
    dozen bytes a value in JSON."""
    return 32 * probs.size * len(request.outputs)


def served_model(predictor: Backend) -> str:
    return str(predictor.info.get("model_name", "classifier"))


def served_paths(model: str) -> set[str]:
    """Every fixed path of the protocol (the route labels of /metrics)."""
    return {"/v2", "/v2/health/live", "/v2/health/ready", *model_paths(model).values()}


def add_v2_routes(app: FastAPI, predictor: Backend, config: ServerConfig,
                  plane: DataPlane) -> None:
    infer = make_infer(predictor, config, plane)
    model = served_model(predictor)
    metadata = model_metadata(model, predictor.image_size, len(predictor.classes))

    def ready() -> bool:
        return predictor.state == "ok"

    def status(ok: bool, key: str) -> JSONResponse:
        return JSONResponse({key: ok}, status_code=200 if ok else 503)

    @app.get("/v2", response_model=ServerMetadata, summary="Open Inference Protocol: server")
    async def server_metadata() -> dict[str, Any]:
        from ..core.version import VERSION

        return {"name": "veil", "version": VERSION, "extensions": EXTENSIONS}

    @app.get("/v2/health/live", summary="Open Inference Protocol: liveness")
    async def live() -> JSONResponse:
        return status(True, "live")

    @app.get("/v2/health/ready", summary="Open Inference Protocol: readiness",
             responses={503: {"description": "the inference process is being replaced"}})
    async def server_ready() -> JSONResponse:
        return status(ready(), "ready")

    def check_model(name: str, version: str = MODEL_VERSION) -> None:
        if name != model or version != MODEL_VERSION:
            raise _not_served(f"/v2/models/{name}/versions/{version}")

    @app.get("/v2/models/{name}", response_model=ModelMetadata, responses={404: V2_ERRORS[404]},
             summary="Open Inference Protocol: model metadata")
    async def model_metadata_route(name: str) -> dict[str, Any]:
        check_model(name)
        return metadata

    @app.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata,
             responses={404: V2_ERRORS[404]}, summary="Open Inference Protocol: model metadata")
    async def versioned_metadata(name: str, version: str) -> dict[str, Any]:
        check_model(name, version)
        return metadata

    @app.get("/v2/models/{name}/ready", responses={404: V2_ERRORS[404], 503: {}},
             summary="Open Inference Protocol: model readiness")
    async def model_ready(name: str) -> JSONResponse:
        check_model(name)
        return status(ready(), "ready")

    @app.get("/v2/models/{name}/versions/{version}/ready",
             responses={404: V2_ERRORS[404], 503: {}},
             summary="Open Inference Protocol: model readiness")
    async def versioned_model_ready(name: str, version: str) -> JSONResponse:
        check_model(name, version)
        return status(ready(), "ready")

    extra = _infer_spec(config.max_images)
    auth = require_token(config.token)

    async def infer_route(name: str, request: Request) -> Response:
        return await infer(request)

    async def versioned_infer_route(name: str, version: str, request: Request) -> Response:
        return await infer(request)

    for path, endpoint in (("/v2/models/{name}/infer", infer_route),
                           ("/v2/models/{name}/versions/{version}/infer", versioned_infer_route)):
        app.add_api_route(path, endpoint, methods=["POST"], response_model=InferResponse,
                          responses=V2_ERRORS, dependencies=auth, openapi_extra=extra,
                          summary="Open Inference Protocol: classify 8-bit obfuscated images")


def _not_served(path: str) -> ApiError:
    return ApiError(404, "model_not_found", f"{path[:80]}: no such model or version on this "
                                            "server (GET /v2/models/... names the one served)")


def _infer_spec(max_images: int) -> dict[str, Any]:
    tensor = {"type": "object", "required": ["name", "shape", "datatype"],
              "properties": {"name": {"type": "string", "enum": [INPUT]},
                             "shape": {"type": "array", "items": {"type": "integer"}},
                             "datatype": {"type": "string", "enum": ["UINT8"]},
                             "data": {"type": "array"},
                             "parameters": {"type": "object"}}}
    output = {"type": "object", "required": ["name"],
              "properties": {"name": {"type": "string", "enum": [OUTPUT]},
                             "parameters": {"type": "object"}}}
    schema = {"type": "object", "required": ["inputs"],
              "properties": {"id": {"type": "string"},
                             "inputs": {"type": "array", "minItems": 1, "maxItems": 1,
                                        "items": tensor},
                             "outputs": {"type": "array", "items": output},
                             "parameters": {"type": "object"}},
              "description": f"one UINT8 [N, H, W, 3] tensor '{INPUT}', N at most {max_images}"}
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}
