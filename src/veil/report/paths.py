"""Absolute machine paths never reach a result file: they are rewritten relative to the repository
(`results/...`), to the folder beside it (`../shared/data/...`), or cut to their file name."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

# An absolute path under the top folders a machine path starts with; a URL's path (`host/v1`) and
# a relative path (`results/x`) are not matched, since a word character, dot or slash precedes them.
ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:work|home|tmp|root|Users|mnt|private|var|opt|srv|"
                      r"scratch|data)(?:/[^\s\"'`,;()\[\]<>|]*)?")


def repo_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds a `.git` (a checkout or a worktree)."""
    here = Path(os.path.abspath(start))
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return None


# The folders the docs place beside the checkout: the shared data, the cloud lanes' worktree.
BESIDE = ("shared", "cloud-lanes")


def portable_path(path: str, roots: tuple[Path, ...]) -> str:
    """One absolute path as a result records it: relative to the first root it lies under (the
    first root is the repository's), `../NAME/...` in a folder of BESIDE next to the repository,
    else its file name alone."""
    p = PurePosixPath(os.path.normpath(path))
    for root in roots:
        if p.is_relative_to(root):
            return str(p.relative_to(root))
    for root in roots[:1]:
        if p.is_relative_to(root.parent) and p.relative_to(root.parent).parts[:1] in [
                (name,) for name in BESIDE]:
            return str(PurePosixPath("..") / p.relative_to(root.parent))
        if p == PurePosixPath(root).parent:
            return ".."
    return p.name or "."


def portable_text(text: str, roots: tuple[Path, ...]) -> str:
    def one(match: re.Match[str]) -> str:
        path = match.group(0)
        end = "." if path.endswith(".") and not path.endswith(("/.", "/..")) else ""  # a full stop
        return portable_path(path.removesuffix(end) if end else path, roots) + end

    return ABSOLUTE.sub(one, text)


def portable(value: Any, roots: tuple[Path, ...]) -> Any:
    """`value` (a JSON document) with every absolute path in its strings made portable."""
    if isinstance(value, str):
        return portable_text(value, roots)
    if isinstance(value, dict):
        return {k: portable(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, roots) for v in value]
    return value
