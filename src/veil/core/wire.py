"""What travels between the edge and the server, and what an export leaves beside its model.

Images go over the wire as 8-bit RGB PNGs (the 8-bit rule: `eightbit`); an exported ONNX
obfuscator has its manifest (classifier, sha256s, parity, preprocessing) beside it, same name,
`.json`.
"""

from __future__ import annotations

import os
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def manifest_path_for(onnx_path: str | os.PathLike) -> Path:
    return Path(onnx_path).with_suffix(".json")
