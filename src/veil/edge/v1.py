"""The edge side of veil's own protocol: the 8-bit obfuscated images as PNG files to
`POST /v1/classify`, after a first look at `GET /healthz` (the server's batch limit, classes,
image size and classifier)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..core.wire import CLASSIFY, FIELD, HEALTH
from .answers import ServerError, checked_classes
from .images import encode_png
from .transport import Transport


class V1:
    """The adapter VeilClient uses for `protocol="v1"`."""

    errors = "v1"
    sends_png = True  # the payloads are the PNG files themselves
    splits_on_413 = False  # /healthz already gave the batch limit

    def __init__(self) -> None:
        self.classes: list[str] | None = None  # the server's, once /healthz has answered

    def payloads(self, images: np.ndarray) -> list[bytes]:
        return [encode_png(im) for im in images]

    def handshake(self, transport: Transport, image_size: int,
                  manifest: dict[str, Any]) -> int | None:
        """Reads /healthz: adopts the server's class list, checks its image size and compares
        its classifier with the one the obfuscator was trained for; returns its batch limit
        (None where a proxy hides /healthz: the defaults still work)."""
        try:
            health = transport.json(transport.request("GET", HEALTH))
        except ServerError as e:
            if e.code in ("bad_response", "timeout"):
                raise
            return None
        limit = health.get("max_images")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise transport.bad(f"/healthz gives max_images {limit!r:.40}, not a whole number "
                                "of at least 1")
        if health.get("classes") is not None:
            self.classes = checked_classes(health["classes"], transport.server)
        if health.get("image_size") not in (None, [image_size, image_size]):
            raise ServerError(200, "image_size_mismatch",
                              f"the server classifies {str(health['image_size'])[:40]} images, "
                              f"the obfuscator makes {image_size}x{image_size} ones",
                              transport.server)
        expected = manifest.get("classifier", {})
        served = health.get("classifier", {})
        served = served if isinstance(served, dict) else {}
        if expected.get("sha256") and served.get("sha256") not in (None, expected["sha256"]):
            warnings.warn(f"the obfuscator was trained for classifier {expected['sha256'][:12]}..."
                          f" but the server runs {str(served['sha256'])[:12]}...; accuracy may "
                          "suffer", stacklevel=4)
        return limit

    def request(self, transport: Transport, payloads: list[bytes], top_k: int) -> list[Any]:
        """One POST of PNGs -> the answer's per-image predictions, unchecked."""
        files = [(FIELD, (f"image-{i}.png", data, "image/png"))
                 for i, data in enumerate(payloads)]
        answer = transport.request("POST", CLASSIFY, files=files, params={"top_k": top_k})
        predictions = transport.json(answer).get("predictions")
        if not isinstance(predictions, list):
            raise transport.bad("the answer holds no list of predictions", answer.status)
        return predictions
