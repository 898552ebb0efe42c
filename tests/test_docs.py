"""The documents name only what exists: every module, attribute and repository path that README,
SECURITY.md and docs/ quote in backticks is there (a rename that misses a document fails here)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("core", "data", "models", "train", "attacks", "eval", "serve", "edge", "export",
            "pipeline", "report", "zoo")
DOTTED = re.compile(r"`((?:veil|" + "|".join(PACKAGES) + r")\.[a-z_][\w.]*)`")
REPO_PATH = re.compile(r"`((?:results|benchmarks|tests|src|docs)/[^`\s*]+)`")


def quoted(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    return sorted({(doc.name, m) for doc in DOCUMENTS for m in pattern.findall(doc.read_text())})


def resolve(dotted: str) -> object:
    parts = dotted.removeprefix("veil.").split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module("veil." + ".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    return importlib.import_module("veil")


def test_the_documents_quote_names_at_all():
    assert len(quoted(DOTTED)) >= 10 and len(quoted(REPO_PATH)) >= 10


@pytest.mark.parametrize(("document", "name"), quoted(DOTTED))
def test_every_quoted_module_or_attribute_exists(document, name):
    try:
        resolve(name)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"{document} quotes `{name}`, which does not exist ({e})")


@pytest.mark.parametrize(("document", "path"), quoted(REPO_PATH))
def test_every_quoted_repository_path_exists(document, path):
    assert (ROOT / path.rstrip("/")).exists(), f"{document} quotes `{path}`, which is not there"
