"""Result files: JSON is the record; Markdown and figures are regenerated from it alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.files import atomic_write

Renderer = tuple[str, Callable[[dict[str, Any]], str], Callable[[dict[str, Any], Path], list[Path]]]


def _renderers() -> dict[str, Renderer]:
    from ..attacks.report import SCHEMA as ATTACKS
    from ..attacks.report import attacks_figures, attacks_markdown
    from .markdown import tables_figures, tables_markdown
    from .tables import SCHEMA as TABLES

    return {TABLES: ("tables", tables_markdown, tables_figures),
            ATTACKS: ("attacks", attacks_markdown, attacks_figures)}


def renderer(result: dict[str, Any], where: str = "result") -> Renderer:
    renderers = _renderers()
    schema = result.get("schema") if isinstance(result, dict) else None
    if schema not in renderers:
        raise ValueError(f"{where}: unknown result schema {schema!r}; known: "
                         f"{', '.join(sorted(renderers))}")
    return renderers[schema]


def render(result: dict[str, Any], out: Path, stem: str | None = None) -> list[Path]:
    """Write `<stem>.md` and the figures of one result into `out`."""
    default_stem, markdown, figures = renderer(result)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{stem or default_stem}.md"
    md.write_text(markdown(result))
    return [md, *figures(result, out)]


def write_result(result: dict[str, Any], out: str | Path) -> list[Path]:
    """Write `<stem>.json` and everything rendered from it; returns the written paths."""
    out = Path(out)
    stem = renderer(result)[0]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}.json"
    atomic_write(path, json.dumps(result, indent=1, allow_nan=False) + "\n")
    return [path, *render(result, out, stem)]


def load_result(path: Path) -> dict[str, Any]:
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    renderer(result, str(path))
    return result


def regenerate(target: str | Path) -> list[Path]:
    """Re-render every result JSON in a folder (or one JSON file) next to it."""
    target = Path(target)
    if target.is_file():
        files = [target]
    elif target.is_dir():
        files = sorted(p for p in target.glob("*.json") if _has_schema(p))
        if not files:
            raise FileNotFoundError(f"{target}: no veil result JSON (tables.json, attacks.json)")
    else:
        raise FileNotFoundError(f"not found: {target}")
    written = []
    for f in files:
        written += render(load_result(f), f.parent, f.stem)
    return written


def _has_schema(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return False
    return isinstance(data, dict) and str(data.get("schema", "")).startswith("veil.")
