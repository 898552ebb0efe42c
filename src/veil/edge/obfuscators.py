"""The obfuscator on the device: an exported ONNX model (torch-free) or a PyTorch checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.eightbit import from_uint8_array
from ..core.files import sha256_bytes
from ..core.wire import manifest_path_for
from .images import IMAGE_SIZE, quantize_uint8


class OnnxObfuscator:
    """The exported obfuscator under onnxruntime: uint8 NHWC in, 8-bit obfuscated NHWC out."""

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no such ONNX obfuscator: {self.path}")
        self.manifest = read_manifest(self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: not a loadable ONNX model ({e})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.input_shape = self.session.get_inputs()[0].shape  # [N, 3, H, W]; N symbolic
        h = self.input_shape[2] if len(self.input_shape) == 4 else None
        self.image_size = h if isinstance(h, int) else IMAGE_SIZE  # what camera images fit to

    def check_input(self, x: np.ndarray) -> None:
        """The images must have the size the model was exported for."""
        expected = [d if isinstance(d, int) else None for d in self.input_shape[1:]]
        got = list(x.shape[1:])
        if len(expected) != len(got) or any(e is not None and e != g
                                             for e, g in zip(expected, got, strict=True)):
            raise ValueError(f"{self.path}: the model takes images of shape "
                             f"{tuple(self.input_shape[1:])} (C, H, W), got {tuple(got)}")

    def run_float(self, x: np.ndarray) -> np.ndarray:
        self.check_input(x)
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return quantize_uint8(self.run_float(from_uint8_array(images)))


class TorchObfuscator:
    """An obfuscator checkpoint run with PyTorch (imports torch; for machines that have it)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        from ..models.loading import ArrayObfuscator  # the edge itself never imports torch

        self.runner = ArrayObfuscator(path, threads)
        self.payload = self.runner.payload
        self.image_size = int((self.payload.get("image_size") or [IMAGE_SIZE])[0])
        self.manifest = {"classifier": self.payload.get("classifier", {}),
                         "classes": self.payload.get("classes", [])}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return quantize_uint8(self.runner(from_uint8_array(images)))


def load_obfuscator(path: str | os.PathLike, threads: int = 1) -> OnnxObfuscator | TorchObfuscator:
    """`.onnx` -> onnxruntime (torch-free); anything else is read as a PyTorch checkpoint."""
    if Path(path).suffix.lower() == ".onnx":
        return OnnxObfuscator(path, threads)
    return TorchObfuscator(path, threads)


def read_manifest(onnx_path: Path) -> dict[str, Any]:
    """The export manifest beside the ONNX file ({} if absent); checks the file's sha256."""
    manifest_path = manifest_path_for(onnx_path)
    if not manifest_path.is_file():
        return {}
    try:
        manifest = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{manifest_path}: not a JSON manifest ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("onnx", {}), dict):
        raise ValueError(f"{manifest_path}: a manifest is a JSON object with an 'onnx' object, "
                         f"got {type(manifest).__name__}")
    expected = manifest.get("onnx", {}).get("sha256")
    if expected and sha256_bytes(onnx_path.read_bytes()) != expected:
        raise ValueError(f"{onnx_path}: sha256 differs from {manifest_path.name}; the model was "
                         f"modified or the manifest belongs to another export")
    return manifest


