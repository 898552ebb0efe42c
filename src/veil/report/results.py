"""Result files: the JSON is the record; its Markdown and figures are rendered from it alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.files import atomic_write

# (file stem, JSON -> Markdown, (JSON, folder) -> figure paths)
Renderer = tuple[str, Callable[[dict[str, Any]], str], Callable[[dict[str, Any], Path], list[Path]]]


def render_with(renderer: Renderer, result: dict[str, Any], out: Path,
                stem: str | None = None) -> list[Path]:
    """Write `<stem>.md` and the figures of one result into `out`."""
    default_stem, markdown, figures = renderer
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{stem or default_stem}.md"
    atomic_write(md, markdown(result))
    return [md, *figures(result, out)]


def write_result_with(renderer: Renderer, result: dict[str, Any], out: str | Path) -> list[Path]:
    """Write `<stem>.json` and everything rendered from it; returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{renderer[0]}.json"
    atomic_write(path, json.dumps(result, indent=1, allow_nan=False) + "\n")
    return [path, *render_with(renderer, result, out, renderer[0])]
