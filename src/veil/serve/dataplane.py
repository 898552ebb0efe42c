"""The one classify path both protocols call (KServe's shape: a data plane behind the protocol
handlers). /v1 (v1.py) and the Open Inference Protocol (v2.py) each decode their own request
into uint8 (N, H, W, 3) images; from there on both go the same way: counted as arriving while
they are read and decoded, shown to the test hook, batched with other requests, answered with
probabilities."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .backend import OnReceive
from .batching import MicroBatcher


class DataPlane:
    """Images in, class probabilities out, through the micro-batcher."""

    def __init__(self, batcher: MicroBatcher, on_receive: OnReceive | None = None) -> None:
        self.batcher, self.on_receive = batcher, on_receive

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Counts a classify request as on its way while the block runs (its body being read,
        its images decoded), however the block ends: the batcher waits for it to join a batch
        only as long as it is still coming."""
        self.batcher.arriving += 1
        try:
            yield
        finally:
            self.batcher.arriving -= 1

    async def classify(self, images: np.ndarray, raws: list[bytes] | None = None) -> np.ndarray:
        """float32 (N, classes) probabilities of uint8 (N, H, W, 3) images; `raws` are the
        bytes they came as (the PNGs of /v1; the pixels themselves when not given)."""
        if self.on_receive is not None:
            self.on_receive(raws if raws is not None else [images.tobytes()], images)
        return await self.batcher.submit(images)
