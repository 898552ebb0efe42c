"""What a server's answer must be, whichever protocol carried it: the errors the edge raises
(`ServerError`, `NotClassified`), one `Prediction` per image, and the checks every per-image
answer passes before it becomes one (the server is not trusted)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..core.text import printable

PROBABILITY_SLACK = 1e-3  # rounding a server may apply to probabilities and their sum


class ServerError(RuntimeError):
    """The server answered with an error, or with something that is not a valid answer
    (status, machine-readable code, message; the message names the server)."""

    def __init__(self, status: int, code: str, detail: str, server: str = "the server") -> None:
        # the server's words, escaped: they reach a terminal (ANSI/OSC sequences, fake lines)
        code, detail = printable(code), printable(detail)
        answered = f"answered {status}" if status else "gave no answer"
        super().__init__(f"{server} {answered} ({code}): {detail}")
        self.status, self.code, self.detail, self.server = status, code, detail, server


@dataclass
class Prediction:
    source: str
    label: str
    class_index: int
    confidence: float
    top_k: list[tuple[str, float]] = field(default_factory=list)
    sent_bytes: int = 0


class NotClassified(ServerError):
    """A request failed part-way through `classify` (the server died, went away or answered
    wrongly). `predictions` holds the images answered before it, in order; `unanswered` names
    the rest, the request in flight first. Classifying has no side effects, so the unanswered
    images may simply be sent again. status/code/detail are the cause's (status 0, code
    "no_answer" when the server could not be reached)."""

    def __init__(self, cause: ServerError | ConnectionError,
                 predictions: list[Prediction | None], unanswered: list[str]) -> None:
        if isinstance(cause, ServerError):
            status, code, detail, server = cause.status, cause.code, cause.detail, cause.server
        else:
            status, code, detail, server = 0, "no_answer", str(cause), "the server"
        shown = ", ".join(unanswered[:5]) + (", ..." if len(unanswered) > 5 else "")
        RuntimeError.__init__(self, f"{cause}; not classified: {len(unanswered)} image(s) "
                                    f"({shown}), {len(predictions)} answered before")
        self.status, self.code, self.detail, self.server = status, code, detail, server
        self.cause, self.predictions, self.unanswered = cause, predictions, unanswered


def checked_classes(classes: Any, server: str = "the server") -> list[str]:
    """The class list a server announces: distinct, non-empty strings."""
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) and c for c in classes)):
        raise ServerError(200, "bad_response", f"/healthz gives classes {str(classes)[:60]}, "
                          "not a list of names", server)
    if len(set(classes)) != len(classes):
        twice = sorted({c for c in classes if classes.count(c) > 1})
        raise ServerError(200, "bad_response", f"/healthz lists class {twice[0][:40]!r} more "
                          "than once", server)
    return list(classes)


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
    for t in top:
        if not _probability(t.get("probability")):
            return (f"probability {str(t.get('probability'))[:20]} of "
                    f"{t['label'][:40]!r} is not a number in [0, 1]")
    labels = [t["label"] for t in top]
    if len(set(labels)) != len(labels):
        return "a label appears twice in top_k"
    if sum(t["probability"] for t in top) > 1 + PROBABILITY_SLACK:
        return "top_k probabilities add up to more than 1"
    if classes is not None:
        unknown = [x for x in [label, *labels] if x not in classes]
        if unknown:
            return f"label {unknown[0][:40]!r} is not one of the server's classes"
        if not 0 <= index < len(classes) or classes[index] != label:
            return f"class_index {index} does not name {label[:40]!r}"
    return None


def to_prediction(source: str, result: dict[str, Any], sent: int) -> Prediction:
    """A checked per-image answer (prediction_problem found nothing) as a Prediction."""
    return Prediction(source, result["label"], int(result["class_index"]),
                      float(result["confidence"]),
                      [(t["label"], float(t["probability"])) for t in result["top_k"]], sent)
