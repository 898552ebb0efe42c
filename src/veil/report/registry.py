"""Every kind of result veil writes, by its schema (`veil.<kind>/N`): the file stem it is written
under, and its renderer (JSON -> Markdown, and figures where the kind has them). The one place to
look for a result's renderer: each module of `report/kinds/` registers its kinds here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Result = dict[str, Any]


def no_figures(result: Result, out: Path) -> list[Path]:
    return []


@dataclass(frozen=True)
class Kind:
    schema: str
    stem: str  # the writer's file names: STEM.json, STEM.md
    markdown: Callable[[Result], str]
    figures: Callable[[Result, Path], list[Path]] = no_figures
    page: str | None = None  # the Markdown's stem where it is not the JSON's


_KINDS: dict[str, Kind] = {}

# schemas renamed to the `veil.<kind>/N` form: files written before still render
RENAMED = {"veil-blackbox/1": "veil.blackbox/1",
           "veil-attacker-curves/1": "veil.attacker_curves/1",
           "veil-device-budget/1": "veil.device_budget/1",
           "veil-linkage-levers/1": "veil.linkage_levers/1",
           "reproduce-progress/1": "veil.reproduce/1"}


def register(kind: Kind) -> Kind:
    if kind.schema in _KINDS:
        raise ValueError(f"schema {kind.schema} registered twice")
    _KINDS[kind.schema] = kind
    return kind


def kinds() -> dict[str, Kind]:
    """Every registered kind, by schema."""
    from . import kinds as _  # noqa: F401  (its modules register on import)

    return dict(_KINDS)


def kind_of(result: Any, where: str = "result") -> Kind:
    """The kind of a result; a ValueError naming `where` for an unknown or absent schema."""
    known = kinds()
    schema = result.get("schema") if isinstance(result, dict) else None
    schema = RENAMED.get(schema, schema) if isinstance(schema, str) else schema
    if schema not in known:
        raise ValueError(f"{where}: unknown result schema {schema!r} (known: "
                         f"{', '.join(sorted(known))})")
    return known[schema]


def owned_elsewhere(path: Path) -> bool:
    """JSON under results/ that is not a result: a copy of a zoo card (`*.card.json`) and the
    measurements `veil zoo build --measured` merges into one (`card_measured.json`). Their format
    is the card's, owned by `veil zoo`; `veil report` leaves them alone."""
    return path.name.endswith(".card.json") or path.name == "card_measured.json"
