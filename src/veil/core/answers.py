"""What veil's server answers, declared once for both sides: the server builds its answers and
errors here (serve/), the edge reads and checks them here before it believes them (edge/; the
server is not trusted). The dataclasses are the shapes the OpenAPI document shows; the
functions beside them build and check the JSON that travels.

An answer of /v1/classify: {"predictions": [one per image], "classifier": {...}}, each
prediction {"index", "label", "class_index", "confidence", "top_k": [{"label", "class_index",
"probability"}, ...]}. An error: {"error": code, "detail": text} on /v1 and the server's own
routes, {"error": text, "code": code} on the Open Inference Protocol (/v2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PROBABILITY_SLACK = 1e-3  # rounding a server may apply to probabilities and their sum


@dataclass(frozen=True)
class TopK:
    label: str
    class_index: int
    probability: float


@dataclass(frozen=True)
class PredictionOut:
    index: int
    label: str
    class_index: int
    confidence: float
    top_k: list[TopK]


@dataclass(frozen=True)
class ClassifierInfo:
    model_name: str
    sha256: str


@dataclass(frozen=True)
class ClassifyResponse:
    predictions: list[PredictionOut]
    classifier: ClassifierInfo


@dataclass(frozen=True)
class Health:
    status: str
    inference: str
    classifier: ClassifierInfo
    classes: list[str]
    image_size: list[int]
    max_images: int
    max_batch: int
    auth: bool


@dataclass(frozen=True)
class ErrorBody:
    """An error of /v1 and the server's own routes."""

    error: str  # the machine-readable code
    detail: str


@dataclass(frozen=True)
class V2ErrorBody:
    """An error of the Open Inference Protocol."""

    error: str  # the text
    code: str  # veil's machine-readable code


# --- building (the server; the edge for answers it ranks itself) -------------------------------
def error_body(code: str, detail: str, v2: bool) -> dict[str, str]:
    """An error as the protocol writes it."""
    return {"error": detail, "code": code} if v2 else {"error": code, "detail": detail}


def prediction(index: int, top: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One image's prediction from its top k entries (label, class_index, probability), best
    first."""
    return {"index": index, "label": top[0]["label"], "class_index": top[0]["class_index"],
            "confidence": top[0]["probability"], "top_k": list(top)}


def ranked(index: int, probs: np.ndarray, classes: Sequence[str], top_k: int) -> dict[str, Any]:
    """One image's prediction from its class probabilities: the `top_k` most likely classes."""
    order = np.argsort(-probs, kind="stable")[:top_k]
    return prediction(index, [{"label": classes[c], "class_index": int(c),
                               "probability": float(probs[c])} for c in order])


# --- reading (the edge) ------------------------------------------------------------------------
def read_error(body: Any, v2: bool, text: str) -> tuple[str, str]:
    """(code, detail) of an error answer; `text` (the raw answer) where it says no detail. An
    answer that holds a 'detail' is read in /v1's shape, whichever protocol asked."""
    body = body if isinstance(body, dict) else {}
    if "detail" in body or not v2:
        return body.get("error", "http_error"), body.get("detail", text)
    return body.get("code", "http_error"), body.get("error", text)


def _probability(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and -PROBABILITY_SLACK <= value <= 1 + PROBABILITY_SLACK)


def prediction_problem(result: Any, position: int, classes: list[str] | None,
                       top_k: int) -> str | None:
    """What is wrong with one prediction of a server's answer, or None if it is valid."""
    if not isinstance(result, dict):
        return "not an object"
    label, index, top = result.get("label"), result.get("class_index"), result.get("top_k")
    if result.get("index", position) != position:
        return f"answers position {str(result.get('index'))[:20]}"
    if not isinstance(label, str) or isinstance(index, bool) or not isinstance(index, int):
        return "no label and class_index"
    if not _probability(result.get("confidence")):
        return f"confidence {str(result.get('confidence'))[:20]} is not a probability"
    if not isinstance(top, list) or len(top) > max(top_k, 1) or not all(
            isinstance(t, dict) and isinstance(t.get("label"), str) for t in top):
        return "top_k is not a list of at most the labels asked for"
    return _top_k_problem(top) or _class_problem(label, index, top, classes)


def _top_k_problem(top: list[dict[str, Any]]) -> str | None:
    for t in top:
        if not _probability(t.get("probability")):
            return (f"probability {str(t.get('probability'))[:20]} of "
                    f"{t['label'][:40]!r} is not a number in [0, 1]")
    labels = [t["label"] for t in top]
    if len(set(labels)) != len(labels):
        return "a label appears twice in top_k"
    if sum(t["probability"] for t in top) > 1 + PROBABILITY_SLACK:
        return "top_k probabilities add up to more than 1"
    return None


def _class_problem(label: str, index: int, top: list[dict[str, Any]],
                   classes: list[str] | None) -> str | None:
    if classes is None:
        return None
    unknown = [x for x in [label, *(t["label"] for t in top)] if x not in classes]
    if unknown:
        return f"label {unknown[0][:40]!r} is not one of the server's classes"
    if not 0 <= index < len(classes) or classes[index] != label:
        return f"class_index {index} does not name {label[:40]!r}"
    return None
