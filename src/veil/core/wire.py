"""What travels between the edge and the server, and what an export leaves beside its model.

The names both sides of both protocols use, in one place: veil's /v1 and the Open Inference
Protocol's /v2. Images go over /v1 as 8-bit RGB PNGs (the 8-bit rule: `eightbit`); an exported ONNX
obfuscator has its manifest (classifier, sha256s, parity, preprocessing) beside it, same name,
`.json`.
"""

from __future__ import annotations

import os
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# veil's own protocol (/v1): PNGs as multipart form fields named FIELD, answers as JSON
HEALTH = "/healthz"
CLASSIFY = "/v1/classify"
FIELD = "files"

# the Open Inference Protocol (KServe v2) as veil serves and calls it
HEADER_LENGTH = "inference-header-content-length"  # the JSON head's length before binary data
V2_INPUT, V2_OUTPUT, V2_MODEL_VERSION = "images", "probabilities", "1"


def v2_model_path(model: str) -> str:
    """/v2/models/{model}: the metadata; + /ready, + /infer (the name already URL-quoted)."""
    return f"/v2/models/{model}"


def manifest_path_for(onnx_path: str | os.PathLike) -> Path:
    return Path(onnx_path).with_suffix(".json")
