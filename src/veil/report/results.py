"""Result files: the JSON is the record; its Markdown and figures are rendered from it alone.

`write_result` is the one writer: every result JSON (src and benchmarks) goes through it, with its
schema; `regenerate` re-renders a folder of them (`veil report DIR`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.files import atomic_write, read_bounded
from .paths import portable, repo_root
from .registry import Kind, Result, kind_of, kinds, owned_elsewhere

RESULT_LIMIT = 256 << 20  # the largest result JSON read (with its embedded image strips)
RENDER_ERRORS = (KeyError, TypeError, IndexError, AttributeError, ValueError)


def render_kind(kind: Kind, result: Result, out: Path, stem: str | None = None,
                where: str = "result") -> list[Path]:
    """Write the Markdown (and, for a file under its kind's own stem, the figures) of one result
    into `out`. Several results of one kind in a folder (`attacks/vgg19.json`, ...) would draw
    their figures over each other's, so only the one named after its kind draws them."""
    stem = stem or kind.stem
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"{kind.page if kind.page and stem == kind.stem else stem}.md"
    try:
        atomic_write(md, kind.markdown(result))
        return [md, *(kind.figures(result, out) if stem == kind.stem else [])]
    except RENDER_ERRORS as e:
        what = f"field {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise ValueError(f"{where}: a {kind.schema} result this version cannot render "
                         f"(missing or mistyped {what})") from None


def render(result: Result, out: Path, stem: str | None = None,
           where: str = "result") -> list[Path]:
    return render_kind(kind_of(result, where), result, out, stem, where)


def write_result(result: Result, out: str | Path, stem: str | None = None) -> list[Path]:
    """Write `<stem>.json` (its kind's stem unless given) and everything rendered from it;
    absolute paths in it are made portable first, relative to the repository `out` lies in (the
    working directory when none). Returns the written paths."""
    out = Path(out)
    kind = kind_of(result)
    result = portable(result, (repo_root(out) or Path.cwd(),))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem or kind.stem}.json"
    atomic_write(path, json.dumps(result, indent=1, allow_nan=False) + "\n")
    return [path, *render_kind(kind, result, out, stem or kind.stem, str(path))]


def read_json(path: Path) -> Any:
    """A result file's JSON: only a regular file of at most RESULT_LIMIT bytes is read."""
    try:
        return json.loads(read_bounded(path, RESULT_LIMIT))
    except ValueError as e:  # JSONDecodeError, a FIFO, a device, an oversized file
        raise ValueError(f"{path}: not a result file ({e})") from None


def load_result(path: Path) -> Result:
    result = read_json(path)
    kind_of(result, str(path))
    return result


def result_files(folder: Path) -> list[Path]:
    """Every JSON under `folder` that is a result (all but those `owned_elsewhere`)."""
    return sorted(p for p in folder.rglob("*.json") if p.is_file() and not owned_elsewhere(p))


def regenerate(target: str | Path) -> list[Path]:
    """Re-render every result JSON under a folder (or one JSON file) next to it. A JSON there of
    no known schema is a ValueError naming it."""
    target = Path(target)
    if target.is_dir():
        files = result_files(target)
        if not files:
            raise FileNotFoundError(f"{target}: no veil result JSON (one of the schemas "
                                    f"{', '.join(sorted(kinds()))})")
    elif target.exists() or target.is_symlink():
        files = [target]  # a regular file, or something `read_json` refuses by name
    else:
        raise FileNotFoundError(f"not found: {target}")
    results = [(f, load_result(f)) for f in files]  # every file checked before any is written
    return [p for f, result in results for p in render(result, f.parent, f.stem, str(f))]
