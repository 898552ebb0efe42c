"""In-process inference of a frozen classifier on 8-bit images (what the server runs)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ModelFault


class Predictor:
    """uint8 (N, H, W, 3) images -> float32 (N, classes) probabilities."""

    def __init__(self, model: nn.Module, classes: list[str], info: dict[str, Any] | None = None,
                 image_size: tuple[int, int] = (32, 32)) -> None:
        self.model = model.eval()
        self.classes = list(classes)
        self.info = dict(info or {})
        self.image_size = tuple(image_size)
        # the Backend protocol's health: in this process the model is always there
        self.state, self.restarts, self.timeouts = "ok", 0, 0

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, verify: bool = True) -> Predictor:
        """Any classifier spec `load_classifier` takes: a checkpoint, `zoo:NAME`, a `.pt2`."""
        from ..models.external import check_classifier
        from ..models.loading import load_classifier

        model, payload = load_classifier(path, verify=verify)
        info = {"model_name": payload["model_name"], "sha256": payload["sha256"] or "",
                "path": str(path), "test_acc": (payload.get("metrics") or {}).get("test_acc")}
        h, w = payload.get("image_size") or (32, 32)  # recorded since veil 0.1 trains any size
        check_classifier(model.eval(), len(payload["classes"]), (int(h), int(w)), str(path))
        return cls(model, payload["classes"], info, (int(h), int(w)))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images)
        if not images.flags.writeable:  # torch warns about (and cannot share) read-only memory
            images = images.copy()
        x = torch.from_numpy(images).permute(0, 3, 1, 2)
        with torch.inference_mode():
            logits = self.model(x.float().div_(255))
            if tuple(logits.shape) != (len(images), len(self.classes)):
                raise ModelFault(f"the classifier gave outputs of shape {tuple(logits.shape)} "
                                 f"for {len(images)} image(s) and {len(self.classes)} classes")
            probs = torch.softmax(logits.float(), 1)
            bad = (~torch.isfinite(probs).all(1)).nonzero().flatten().tolist()
            if bad:
                raise ModelFault(f"the classifier's output is not finite (NaN or inf) for "
                                 f"{len(bad)} of {len(images)} image(s) in the batch: a fault "
                                 "of the served model, not of the images")
            return probs.numpy()

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 8)) -> None:
        for n in batch_sizes:
            self(np.zeros((n, *self.image_size, 3), np.uint8))
