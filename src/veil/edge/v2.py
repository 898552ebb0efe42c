"""The edge side of the Open Inference Protocol (KServe v2): veil's edge in front of `veil serve`
or of any Triton / KServe deployment of a classifier.

The model's metadata says how it takes the obfuscated images: UINT8 as they are, or FP32/FP16
scaled to [0, 1] (what veil's classifiers compute from the 8-bit image), as [N, H, W, 3] or
[N, 3, H, W]. Any normalisation beyond that is the served model's own. The answer is asked in
the classification extension (`score:index[:label]` strings of the top k: veil serve, Triton).
A server without it (KServe's Python server, MLServer) answers the output tensor itself,
[N, classes] numbers: then the top k are computed here, from probabilities as they are or from
logits through a softmax, and the class names come from the obfuscator's manifest (or the
caller). Either way the answer is checked: its shape against the metadata, finite scores, a
distribution where the output's name says it is one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np

from ..core.answers import prediction, ranked
from ..core.text import MAX_CLASS_NAME
from ..core.wire import HEADER_LENGTH, V2_OUTPUT, v2_model_path
from .answers import ServerError
from .transport import Transport

PROBABILITY_NAMES = (V2_OUTPUT, "probs", "softmax", "output_probabilities")
NUMERIC = ("FP32", "FP16", "FP64")
# ("nan" and "inf" are read, then refused as probabilities by the answer's check)
_SCORE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(nan|inf)",
                    re.IGNORECASE)
_INDEX = re.compile(r"[+-]?[0-9]{1,9}")
SCALED = {"FP32": "<f4", "FP16": "<f2"}


class BadModel(ValueError):
    """The model's metadata or answer is not what an image classifier over v2 gives."""


class V2:
    """The adapter VeilClient uses for `protocol="v2"`: the model's metadata first, then each
    request's images as its input tensor (binary data), the top k asked in the classification
    extension; an answer without it (a plain score tensor) is ranked here, labelled by
    `class_names` (the obfuscator's manifest, or the caller's)."""

    errors = "v2"
    sends_png = False  # the payloads are the 8-bit pixels
    splits_on_413 = True  # a model's metadata need not say its batch limit
    classes = None  # the server announces no class list: labels are checked as they come

    def __init__(self, model: str, class_names: list[str] | None) -> None:
        self.model, self.class_names = model, class_names
        self.input: ModelInput | None = None  # from the model's metadata, once checked
        self.labels: dict[int, str] = {}  # class index -> the label the model gave it

    def payloads(self, images: np.ndarray) -> list[bytes]:
        return [im.tobytes() for im in images]

    def handshake(self, transport: Transport, image_size: int,
                  manifest: dict[str, Any]) -> int | None:
        """Reads the model's metadata: its input tensor, its size; returns its batch limit."""
        answer = transport.request("GET", v2_model_path(quote(self.model, safe="")))
        try:
            spec = model_input(transport.json(answer), self.model)
        except BadModel as e:
            raise transport.bad(str(e), answer.status) from None
        if spec.size != (image_size, image_size):
            raise ServerError(200, "image_size_mismatch",
                              f"model {self.model!r} takes {spec.size[1]}x{spec.size[0]} "
                              f"images, the obfuscator makes {image_size}x{image_size} ones",
                              transport.server)
        self.input = spec
        return spec.max_batch

    def request(self, transport: Transport, payloads: list[bytes], top_k: int) -> list[Any]:
        """One infer request -> per-image predictions in /v1's shape, unchecked."""
        spec = self.input
        assert spec is not None, "handshake first"
        h, w = spec.size
        images = np.frombuffer(b"".join(payloads), np.uint8).reshape(len(payloads), h, w, 3)
        body, header_length = infer_request(spec, images, top_k)
        answer = transport.request("POST", f"{v2_model_path(quote(spec.model, safe=''))}/infer",
                                   content=body,
                                   headers={HEADER_LENGTH: header_length,
                                            "content-type": "application/octet-stream"})
        try:
            return predictions(transport.json(answer), spec, len(payloads), top_k,
                               self.labels, self.class_names)
        except BadModel as e:
            raise transport.bad(str(e), answer.status) from None


@dataclass(frozen=True)
class ModelInput:
    """How one served model takes images: tensor name, datatype and layout."""

    model: str
    input: str
    datatype: str  # UINT8, FP32 or FP16
    channels_first: bool
    size: tuple[int, int]
    output: str
    max_batch: int | None  # a fixed first dimension, else None
    classes: int | None = None  # the output's last dimension, where the metadata fixes it

    def encode(self, images: np.ndarray) -> bytes:
        """uint8 (N, H, W, 3) images -> the tensor's bytes, little-endian."""
        tensor = images.transpose(0, 3, 1, 2) if self.channels_first else images
        if self.datatype == "UINT8":
            return np.ascontiguousarray(tensor).tobytes()
        scaled = tensor.astype(np.float32) / 255
        return np.ascontiguousarray(scaled, SCALED[self.datatype]).tobytes()

    def shape(self, n: int) -> list[int]:
        h, w = self.size
        return [n, 3, h, w] if self.channels_first else [n, h, w, 3]


def model_input(metadata: Any, model: str) -> ModelInput:
    """Reads a model's metadata (GET /v2/models/{model}); BadModel says what does not fit."""
    if not isinstance(metadata, dict):
        raise BadModel("the model metadata is not a JSON object")
    inputs, outputs = metadata.get("inputs"), metadata.get("outputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise BadModel(f"model {model!r} must take exactly one input tensor (the image), "
                       f"its metadata lists {len(inputs) if isinstance(inputs, list) else 0}")
    if not isinstance(outputs, list) or not outputs or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise BadModel(f"model {model!r} lists no output tensors")
    tensor = inputs[0]
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    if not isinstance(name, str) or datatype not in ("UINT8", *SCALED):
        raise BadModel(f"model {model!r} takes {str(datatype)[:20]} input; an image classifier "
                       "behind veil's edge takes UINT8, FP32 or FP16")
    if (not isinstance(shape, list) or len(shape) != 4
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        raise BadModel(f"model {model!r} input shape {str(shape)[:40]} is not [N, H, W, 3] "
                       "or [N, 3, H, W]")
    channels_first = shape[1] == 3 and shape[3] != 3
    h, w = shape[2:4] if channels_first else shape[1:3]
    if (shape[1] if channels_first else shape[3]) != 3 or h < 1 or w < 1:
        raise BadModel(f"model {model!r} input shape {shape} is not [N, H, W, 3] or "
                       "[N, 3, H, W] with fixed H and W")
    names = [o["name"] for o in outputs]
    output = V2_OUTPUT if V2_OUTPUT in names else names[0]
    return ModelInput(model, name, datatype, channels_first, (h, w), output,
                      shape[0] if shape[0] > 0 else None,
                      _classes(outputs[names.index(output)].get("shape")))


def _classes(shape: Any) -> int | None:
    """The number of classes an output of shape [N, classes] fixes (None: not fixed)."""
    if (isinstance(shape, list) and shape and isinstance(shape[-1], int)
            and not isinstance(shape[-1], bool) and shape[-1] > 0):
        return shape[-1]
    return None


def infer_request(spec: ModelInput, images: np.ndarray, top_k: int) -> tuple[bytes, str]:
    """(body, JSON header length) of one infer request: the tensor as binary data."""
    data = spec.encode(images)
    head = json.dumps({
        "inputs": [{"name": spec.input, "datatype": spec.datatype, "shape": spec.shape(len(images)),
                    "parameters": {"binary_data_size": len(data)}}],
        "outputs": [{"name": spec.output,
                     "parameters": {"classification": top_k, "binary_data": False}}],
    }, separators=(",", ":")).encode()
    return head + data, str(len(head))


def predictions(answer: Any, spec: ModelInput, n: int, top_k: int,
                labels: dict[int, str] | None = None,
                class_names: list[str] | None = None) -> list[dict[str, Any]]:
    """An infer answer's classification output -> veil's per-image prediction objects (as
    /v1/classify gives them, so the client checks both alike). Each entry's index must be one
    of the model's classes, each row sorted by score, and a class keep one label: `labels`
    (index -> label) holds those seen so far, across answers."""
    if not isinstance(answer, dict) or not isinstance(answer.get("outputs"), list):
        raise BadModel("the answer holds no list of outputs")
    named = [o for o in answer["outputs"] if isinstance(o, dict) and o.get("name") == spec.output]
    if not named:
        raise BadModel(f"the answer has no output {spec.output!r}")
    if len(named) > 1:
        raise BadModel(f"the answer holds output {spec.output!r} {len(named)} times")
    output = named[0]
    data = output.get("data")
    if output.get("datatype") in NUMERIC:  # no classification extension: the tensor itself
        return tensor_predictions(output, spec, n, top_k, class_names)
    if output.get("shape") != [n, top_k]:
        raise BadModel(f"output {spec.output!r} has shape {str(output.get('shape'))[:30]}, "
                       f"not the [{n}, {top_k}] classification asked for, nor a tensor of "
                       "scores")
    if not isinstance(data, list) or len(data) != n * top_k:
        count = f"{len(data)} entries" if isinstance(data, list) else "no list of entries"
        raise BadModel(f"output {spec.output!r} of shape [{n}, {top_k}] holds {count}, not "
                       f"{n * top_k}")
    labels = {} if labels is None else labels
    return [_prediction(i, data[i * top_k:(i + 1) * top_k], spec.classes, labels)
            for i in range(n)]


def tensor_predictions(output: dict[str, Any], spec: ModelInput, n: int, top_k: int,
                       class_names: list[str] | None = None) -> list[dict[str, Any]]:
    """A plain [N, classes] output (probabilities, or logits) -> the top k of each image,
    computed on the device; labelled with `class_names` (index order), else by index."""
    shape, data = output.get("shape"), output.get("data")
    classes = spec.classes or (shape[1] if isinstance(shape, list) and len(shape) == 2 else None)
    if (not isinstance(classes, int) or isinstance(classes, bool) or classes < 1
            or shape != [n, classes] or not isinstance(data, list) or len(data) != n * classes):
        raise BadModel(f"output {spec.output!r} has shape {str(shape)[:30]}, not the "
                       f"[{n}, {spec.classes or 'classes'}] of the model's metadata")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        raise BadModel(f"output {spec.output!r} holds values that are not numbers")
    try:
        scores = np.asarray(data, dtype=np.float64).reshape(n, classes)
    except OverflowError:  # an integer beyond any float (10**400)
        raise BadModel(f"output {spec.output!r} holds a number too large for a score") from None
    if not np.isfinite(scores).all():
        raise BadModel(f"output {spec.output!r} holds NaN or infinite scores")
    if class_names is not None and len(class_names) != classes:
        raise BadModel(f"the model has {classes} classes, the obfuscator's manifest names "
                       f"{len(class_names)}: it was trained for another classifier")
    is_distribution = bool((scores >= -1e-6).all()
                           and np.allclose(scores.sum(1), 1.0, atol=1e-3))
    if spec.output.lower() in PROBABILITY_NAMES and not is_distribution:
        raise BadModel(f"output {spec.output!r} is named as probabilities, but its rows are "
                       "not distributions (negative, or not summing to 1)")
    probabilities = scores if is_distribution else _softmax(scores)
    names = class_names or [str(i) for i in range(classes)]
    return [ranked(i, row, names, top_k) for i, row in enumerate(probabilities)]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def _prediction(index: int, entries: list[Any], classes: int | None,
                labels: dict[int, str]) -> dict[str, Any]:
    top = [_entry(e, classes, labels) for e in entries]
    scores = [t["probability"] for t in top]
    if any(a < b for a, b in zip(scores, scores[1:], strict=False)):  # NaN compares False
        raise BadModel(f"the classification of image {index} is not sorted by score: "
                       f"{', '.join(repr(e)[:40] for e in entries[:4])}")
    return prediction(index, top)


def _entry(entry: Any, classes: int | None, labels: dict[int, str]) -> dict[str, Any]:
    """'score:index:label' (or 'score:index' from a model without labels), of a class the
    model has, with the label that class had before."""
    parts = entry.split(":", 2) if isinstance(entry, str) else []
    # plain ASCII numbers only: float() and int() also take "0_0.5" and other scripts' digits
    if len(parts) < 2 or not (_SCORE.fullmatch(parts[0]) and _INDEX.fullmatch(parts[1])):
        raise BadModel(f"classification entry {repr(entry)[:40]} is not "
                       "'score:index:label'")
    score, index = float(parts[0]), int(parts[1])
    if index < 0 or (classes is not None and index >= classes):
        raise BadModel(f"classification entry {repr(entry)[:40]} names class {index}; the "
                       f"model has classes 0 to {'...' if classes is None else classes - 1}")
    if len(parts) == 3 and not parts[2]:
        raise BadModel(f"classification entry {repr(entry)[:40]} has an empty label")
    if len(parts) == 3 and len(parts[2]) > MAX_CLASS_NAME:
        raise BadModel(f"classification entry {repr(entry)[:40]}... has a label longer than "
                       f"{MAX_CLASS_NAME} characters")
    label = parts[2] if len(parts) == 3 else str(index)
    if labels.setdefault(index, label) != label:
        raise BadModel(f"class {index} is labelled both {labels[index][:40]!r} and "
                       f"{label[:40]!r}")
    return {"label": label, "class_index": index, "probability": score}
