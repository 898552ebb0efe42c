"""Obfuscator -> ONNX: BatchNorm folded, dynamic batch, parity checked, manifest written.

The exported graph takes float32 images in [0, 1] of shape (batch, 3, S, S), S the size the
obfuscator was trained at (32 on CIFAR-10; `--image-size`), and returns the obfuscated image in
[0, 1]; the edge quantises it to 8 bits (what is sent). The ONNX file only
replaces its target once onnxruntime reproduces PyTorch on the parity images, so a failed
export never leaves a half-verified model behind.
"""

from __future__ import annotations

import copy
import io
import json
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.eightbit import from_uint8_array, to_uint8_array
from ..core.files import atomic_write, sha256_bytes, sha256_of
from ..core.wire import manifest_path_for
from ..models.fold import fold_batchnorm as fold_conv_batchnorm

INPUT_NAME = "image"
OUTPUT_NAME = "obfuscated"
DEFAULT_OPSET = 17
MAX_ABS_DIFF = 1e-4
MIN_UINT8_EQUAL = 0.999
MANIFEST_FORMAT = "veil-obfuscator-onnx"
MANIFEST_VERSION = 1


class ExportError(RuntimeError):
    pass


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of model in which every Conv2d -> BatchNorm2d pair is one biased conv
    (`veil.models.fold`); an export must leave no BatchNorm behind."""
    folded = fold_conv_batchnorm(model)
    left = [name for name, m in folded.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ExportError(f"BatchNorm layers not preceded by a conv cannot be folded: {left}")
    return folded


def onnx_bytes(model: nn.Module, image_size: tuple[int, int] = (32, 32),
               opset: int = DEFAULT_OPSET) -> bytes:
    """The folded model as an ONNX graph with a dynamic batch dimension.

    Uses the TorchScript exporter: the torch.export-based one needs onnxscript, which veil does
    not depend on. Tracing is exact here since the obfuscator has no data-dependent control flow.
    """
    import onnx  # first, so a missing onnx names itself (torch's exporter would only say so)

    folded = fold_batchnorm(model)
    buffer = io.BytesIO()
    dynamic = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(folded, (torch.rand(1, 3, *image_size),), buffer, dynamo=False,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True)
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    if "BatchNormalization" in onnx_op_types(data):
        raise ExportError("the exported graph still has BatchNormalization nodes")
    return data


def onnx_op_types(model: bytes | str | os.PathLike) -> set[str]:
    import onnx

    proto = (onnx.load_from_string(model) if isinstance(model, bytes)
             else onnx.load(os.fspath(model)))
    return {node.op_type for node in proto.graph.node}


def verify_parity(model: nn.Module, onnx_model: bytes | str | os.PathLike, images: np.ndarray,
                  batch_size: int = 50) -> dict[str, Any]:
    """Compare PyTorch and onnxruntime on uint8 NHWC images (float and 8-bit outputs)."""
    import onnxruntime as ort

    if not len(images):
        raise ExportError("no parity images")
    source = onnx_model if isinstance(onnx_model, bytes) else os.fspath(onnx_model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    max_abs, equal, total = 0.0, 0, 0
    sizes = [1] + [batch_size] * -(-(len(images) - 1) // batch_size)  # batch 1 and batched
    start = 0
    for size in sizes:
        chunk = images[start:start + size]
        start += size
        if not len(chunk):
            break
        x = from_uint8_array(chunk)
        with torch.no_grad():
            x_torch = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            expected = model(x_torch).contiguous().numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        max_abs = max(max_abs, float(np.abs(got - expected).max()))
        equal += int((to_uint8_array(got) == to_uint8_array(expected)).sum())
        total += expected.size
    return {"images": int(len(images)), "max_abs_diff": max_abs,
            "uint8_equal_fraction": equal / total, "max_abs_diff_limit": MAX_ABS_DIFF,
            "uint8_equal_fraction_limit": MIN_UINT8_EQUAL}


def check_parity(parity: dict[str, Any]) -> None:
    if parity["max_abs_diff"] > MAX_ABS_DIFF:
        raise ExportError(f"onnxruntime differs from PyTorch by {parity['max_abs_diff']:.2e} "
                          f"(limit {MAX_ABS_DIFF:.0e})")
    if parity["uint8_equal_fraction"] < MIN_UINT8_EQUAL:
        raise ExportError(f"only {parity['uint8_equal_fraction']:.4%} of 8-bit pixels match "
                          f"(need {MIN_UINT8_EQUAL:.1%})")


def export_obfuscator(checkpoint: str | os.PathLike, out: str | os.PathLike = "obfuscator.onnx",
                      data: str = "sample", max_images: int | None = None,
                      opset: int = DEFAULT_OPSET) -> ExportResult:
    """Export an obfuscator checkpoint to `out` and write its manifest to `out` with .json."""
    from ..data import load_dataset
    from ..models.loading import load_obfuscator_pair

    obfuscator, _, payload = load_obfuscator_pair(checkpoint)
    if obfuscator.noise > 0:  # exported, it would be deterministic: one re-obfuscation links all
        raise ExportError(f"{checkpoint}: a randomised obfuscator (bottleneck noise std "
                          f"{obfuscator.noise:g}) cannot be exported yet: its graph would need a "
                          "random-normal op (RandomNormalLike) drawn on the device per call, "
                          "and an export without it would send deterministically; run it with "
                          "`veil classify --obfuscator` on the checkpoint instead")
    size = trained_image_size(payload)
    images = load_dataset(data, image_size=size[0]).test.subset(max_images).images
    data_bytes = onnx_bytes(obfuscator, size, opset=opset)
    parity = verify_parity(obfuscator, data_bytes, images)
    check_parity(parity)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, data_bytes)
    manifest = build_manifest(out, data_bytes, payload, parity, opset,
                              {"path": str(checkpoint), "sha256": sha256_of(checkpoint)})
    manifest_path = manifest_path_for(out)
    atomic_write(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return ExportResult(out, manifest_path, manifest)


def build_manifest(onnx_path: Path, data: bytes, payload: dict[str, Any], parity: dict[str, Any],
                   opset: int, source: dict[str, str]) -> dict[str, Any]:
    import onnx
    import onnxruntime

    from ..core.version import VERSION as __version__

    metrics = payload.get("metrics") or {}
    h, w = trained_image_size(payload)
    tensor = {"dtype": "float32", "shape": ["batch", 3, h, w], "layout": "NCHW",
              "range": [0.0, 1.0], "color": "RGB"}
    return {
        "format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION,
        "onnx": {"file": onnx_path.name, "sha256": sha256_bytes(data),
                 "bytes": len(data), "opset": opset, "batchnorm_folded": True,
                 "ops": sorted(onnx_op_types(data))},
        "input": {"name": INPUT_NAME, **tensor, "preprocess": f"RGB uint8 / 255, shorter side "
                  f"resized to {h} then centre-cropped to {h}x{w}"},
        "output": {"name": OUTPUT_NAME, **tensor},
        "transmitted": {"format": "PNG", "mode": "RGB", "dtype": "uint8", "shape": [h, w, 3],
                        "quantisation": "round(clip(output, 0, 1) * 255)"},
        "classifier": payload.get("classifier", {}),
        "classes": list(payload.get("classes", [])),
        "accuracy": _accuracy(metrics, payload.get("classifier", {})),
        "metrics": metrics,
        "parity": parity,
        "source": source,
        "versions": {"veil": __version__, "torch": str(torch.__version__), "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
    }


def trained_image_size(payload: dict[str, Any]) -> tuple[int, int]:
    """The (H, W) an obfuscator was trained at (32x32 for checkpoints from before veil
    recorded it)."""
    h, w = payload.get("image_size") or (32, 32)
    if h != w:
        raise ExportError(f"the obfuscator was trained on {w}x{h} images; veil exports square "
                          "sizes (train with --image-size N)")
    return int(h), int(w)


def _accuracy(metrics: dict[str, Any], classifier: dict[str, Any]) -> dict[str, Any] | None:
    values = {"obfuscated": metrics.get("obfuscated_acc"), "plain": metrics.get("plain_acc"),
              "classifier_card": classifier.get("test_acc")}
    values = {k: v for k, v in values.items() if v is not None}
    return values or None
