"""What the edge makes of a server's answer, whichever protocol carried it: the errors it raises
(`ServerError`, `NotClassified`) and one `Prediction` per image. The answer's shape, and the
check every per-image answer passes before it becomes a Prediction (the server is not trusted),
are the wire contract the server builds its answers from: core/answers.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.text import check_class_names, printable


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
    """The class list a server announces, held to the rule every part of veil keeps
    (core.text.check_class_names); a ServerError naming the server otherwise."""
    try:
        return check_class_names(classes, "/healthz", lines=False)
    except ValueError as e:
        raise ServerError(200, "bad_response", str(e), server) from None


def to_prediction(source: str, result: dict[str, Any], sent: int) -> Prediction:
    """A checked per-image answer (prediction_problem found nothing) as a Prediction."""
    return Prediction(source, result["label"], int(result["class_index"]),
                      float(result["confidence"]),
                      [(t["label"], float(t["probability"])) for t in result["top_k"]], sent)
