"""What the app serves: a `Backend`, the frozen classifier behind every route. Two kinds
satisfy it: `inference.Predictor` (in this process, needs torch) and `worker.InferenceProcess`
(in a child process, the default); the app and both protocols see only this."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

# what the tests may watch: every accepted upload's raw PNG bytes and decoded images
OnReceive = Callable[[list[bytes], np.ndarray], None]


class Backend(Protocol):
    classes: list[str]
    image_size: tuple[int, int]
    info: dict[str, Any]
    state: str  # "ok", or why the classifier cannot answer now ("starting", "restarting")
    restarts: int  # replaced after dying
    timeouts: int  # replaced after not answering in time

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) images -> float32 (N, classes) probabilities; raises
        `errors.ModelFault` or `errors.InferenceTimeout`."""
        ...

    def warm_up(self) -> None: ...


def classifier_info(backend: Backend) -> dict[str, str]:
    """The served classifier's name and checkpoint hash, as every answer and /healthz show them."""
    return {"model_name": str(backend.info.get("model_name", "unknown")),
            "sha256": str(backend.info.get("sha256", ""))}
