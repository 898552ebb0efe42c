"""Every kind of result JSON veil writes, found by its schema: rendering and regenerating them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.files import read_bounded
from ..report.results import Renderer, render_with, write_result_with


def _renderers() -> dict[str, Renderer]:
    """Every result schema veil writes -> its renderer (file stem, Markdown, figures)."""
    from ..attacks.fresh_decoder import CURVE_SCHEMA
    from ..attacks.render import CURVES_RENDERER
    from ..attacks.render import RENDERER as ATTACKS_RENDERER
    from ..attacks.render import SCHEMA as ATTACKS
    from ..models.complexity import SCHEMA as MODELS
    from ..models.complexity import report_markdown
    from .render import (
        BLACKBOX_SCHEMA,
        DEMO_SCHEMA,
        blackbox_markdown,
        demo_markdown,
        tables_figures,
        tables_markdown,
    )
    from .tables import SCHEMA as TABLES

    def no_figures(result: dict[str, Any], out: Path) -> list[Path]:
        return []

    return {TABLES: ("tables", tables_markdown, tables_figures), ATTACKS: ATTACKS_RENDERER,
            CURVE_SCHEMA: CURVES_RENDERER, MODELS: ("models", report_markdown, no_figures),
            BLACKBOX_SCHEMA: ("blackbox", blackbox_markdown, no_figures),
            DEMO_SCHEMA: ("demo", demo_markdown, no_figures)}


def renderer(result: dict[str, Any], where: str = "result") -> Renderer:
    renderers = _renderers()
    schema = result.get("schema") if isinstance(result, dict) else None
    if schema not in renderers:
        raise ValueError(f"{where}: unknown result schema {schema!r}; known: "
                         f"{', '.join(sorted(renderers))}")
    return renderers[schema]


def render(result: dict[str, Any], out: Path, stem: str | None = None,
           where: str = "result") -> list[Path]:
    """Write `<stem>.md` and the figures of one result into `out`; a result of a known schema
    that lacks or mistypes a field is a ValueError naming it, not a traceback."""
    chosen = renderer(result, where)
    try:
        return render_with(chosen, result, out, stem)
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        what = f"field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise ValueError(f"{where}: a {result['schema']} result this version cannot render "
                         f"(missing or mistyped {what})") from None


def write_result(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Write `<stem>.json` and everything rendered from it; returns the written paths."""
    return write_result_with(renderer(result), result, out)


RESULT_LIMIT = 256 << 20  # the largest result JSON read (with its embedded image strips)


def _read(path: Path) -> Any:
    """A result file's JSON: only a regular file of at most RESULT_LIMIT bytes is read."""
    try:
        return json.loads(read_bounded(path, RESULT_LIMIT))
    except ValueError as e:  # JSONDecodeError, a FIFO, a device, an oversized file
        raise ValueError(f"{path}: not a result file ({e})") from None


def load_result(path: Path) -> dict[str, Any]:
    result = _read(path)
    renderer(result, str(path))
    return result


def regenerate(target: str | Path) -> list[Path]:
    """Re-render every result JSON in a folder (or one JSON file) next to it."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        files = [target]  # a regular file, or something `_read` refuses by name
    elif target.is_dir():
        files = sorted(p for p in target.glob("*.json") if _has_schema(p))
        if not files:
            raise FileNotFoundError(f"{target}: no veil result JSON (one of the schemas "
                                    f"{', '.join(sorted(_renderers()))})")
    else:
        raise FileNotFoundError(f"not found: {target}")
    written = []
    for f in files:
        written += render(load_result(f), f.parent, f.stem, str(f))
    return written


def _has_schema(path: Path) -> bool:
    try:
        data = _read(path)
    except (ValueError, OSError):
        return False
    return isinstance(data, dict) and data.get("schema") in _renderers()
