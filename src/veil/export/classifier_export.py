"""The frozen classifier for an existing serving engine: ONNX and a model repository.

`veil serve` is the batteries-included cloud side; at scale the same classifier can run on
Triton or KServe instead. The exported graph takes what the edge sends, `images` UINT8
[N, H, W, 3] (the 8-bit obfuscated images), and does the rest itself: cast, /255, to NCHW, the
classifier (its own normalisation inside) and a softmax, so its output is `probabilities` FP32
[N, classes], as `veil serve`'s /v2 answers. Written into OUT/NAME:

    1/model.onnx            the graph (dynamic batch), checked by onnx and against PyTorch
    config.pbtxt            Triton: the onnxruntime backend, dynamic batching, the labels
    labels.txt              one class name per line (Triton's classification extension)
    inferenceservice.yaml   KServe: an InferenceService serving this folder with Triton
    manifest.json           the checkpoint's sha256, the classes, the parity measured
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.files import atomic_write, sha256_bytes
from ..core.text import shown
from ..core.wire import V2_INPUT, V2_OUTPUT
from ..data import load_dataset
from ..models.loading import load_classifier

DEFAULT_OPSET = 17
MAX_PROBABILITY_DIFF = 1e-4
MIN_TOP1_AGREEMENT = 0.995
MAX_BATCH = 64


class ServedClassifier(nn.Module):
    """uint8 NHWC images -> class probabilities: the classifier as a server receives it."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255
        return torch.softmax(self.classifier(x), dim=1)


MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")  # a folder, Triton's, KServe's


def check_repository(out: str | os.PathLike, name: str) -> Path:
    """OUT/NAME, if NAME is a plain model name (a folder inside OUT, safe in config.pbtxt and
    the KServe YAML) and the folder holds no version but the one written (Triton would serve
    the newest); checked before any work."""
    if not MODEL_NAME.match(name) or name.strip(".") == "":
        raise ValueError(f"--name {shown(name)}: a model name is letters, digits, '_', '.' "
                         "and '-' (at most 63, starting with a letter or digit)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: not a folder (the model repository)")
    folder = out / name
    stale = sorted(p.name for p in folder.glob("*") if p.is_dir() and p.name != "1")
    if stale:
        raise ValueError(f"{folder} already holds version folder(s) {', '.join(stale)}, which "
                         "Triton would serve instead of the one exported; remove them or "
                         "choose another --out or --name")
    return folder


def export_classifier_repository(checkpoint: str | os.PathLike, out: str | os.PathLike,
                                 name: str = "classifier", data: str = "sample",
                                 max_images: int | None = 200,
                                 opset: int = DEFAULT_OPSET) -> Path:
    """Write the model repository folder OUT/NAME for `checkpoint` (a veil classifier, or any
    spec `load_classifier` takes); the export fails unless onnxruntime agrees with PyTorch on
    `data`'s test images. Everything is computed before the first file is written."""
    folder = check_repository(out, name)
    classifier, payload = load_classifier(checkpoint)
    classes = payload["classes"]  # checked by the loader: distinct one-line names
    h, w = (payload.get("image_size") or [32, 32])[:2]
    served = ServedClassifier(classifier).eval()
    graph = _onnx_bytes(served, (h, w), opset)
    images = load_dataset(data, image_size=h).test.images[:max_images]
    parity = _parity(served, graph, images)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "1" / "model.onnx", graph)
    atomic_write(folder / "labels.txt", "".join(f"{c}\n" for c in classes))
    atomic_write(folder / "config.pbtxt", triton_config(name, (h, w), len(classes)))
    atomic_write(folder / "inferenceservice.yaml", inference_service(name))
    manifest = {"model": name, "checkpoint": {"path": str(checkpoint),
                                              "sha256": payload["sha256"],
                                              "model_name": payload["model_name"]},
                "classes": classes, "input": {"name": V2_INPUT, "datatype": "UINT8",
                                              "shape": [-1, h, w, 3]},
                "output": {"name": V2_OUTPUT, "datatype": "FP32", "shape": [-1, len(classes)]},
                "onnx": {"sha256": sha256_bytes(graph), "bytes": len(graph), "opset": opset},
                "parity": parity}
    atomic_write(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return folder


def triton_config(name: str, size: tuple[int, int], classes: int) -> str:
    h, w = size
    return f"""name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {MAX_BATCH}
input [
  {{
    name: "{V2_INPUT}"
    data_type: TYPE_UINT8
    dims: [ {h}, {w}, 3 ]
  }}
]
output [
  {{
    name: "{V2_OUTPUT}"
    data_type: TYPE_FP32
    dims: [ {classes} ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{ }}
"""


def inference_service(name: str) -> str:
    return f"""# KServe: serve this model repository folder with the Triton runtime. Copy the folder
# (with its parent as the repository) to object storage and set storageUri to that parent.
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name.replace("_", "-")}
spec:
  predictor:
    model:
      modelFormat:
        name: triton
      protocolVersion: v2
      storageUri: s3://YOUR-BUCKET/models
"""


def _onnx_bytes(model: nn.Module, size: tuple[int, int], opset: int) -> bytes:
    import onnx  # first, so a missing onnx names itself

    buffer = io.BytesIO()
    example = torch.zeros(1, *size, 3, dtype=torch.uint8)
    dynamic = {V2_INPUT: {0: "batch"}, V2_OUTPUT: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), buffer, dynamo=False, input_names=[V2_INPUT],
                          output_names=[V2_OUTPUT], dynamic_axes=dynamic, opset_version=opset,
                          do_constant_folding=True)
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def _parity(model: nn.Module, graph: bytes, images: np.ndarray) -> dict[str, Any]:
    import onnxruntime as ort

    from .onnx_export import ExportError

    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    got = session.run([V2_OUTPUT], {V2_INPUT: images})[0]
    parity = {"images": int(len(images)),
              "max_abs_diff": float(np.abs(got - expected).max()),
              "top1_agreement": float((got.argmax(1) == expected.argmax(1)).mean()),
              "max_abs_diff_limit": MAX_PROBABILITY_DIFF,
              "top1_agreement_limit": MIN_TOP1_AGREEMENT}
    if parity["max_abs_diff"] > MAX_PROBABILITY_DIFF or \
            parity["top1_agreement"] < MIN_TOP1_AGREEMENT:
        raise ExportError(f"onnxruntime disagrees with PyTorch: max |diff| "
                          f"{parity['max_abs_diff']:.2e}, top-1 agreement "
                          f"{parity['top1_agreement']:.2%}")
    return parity
