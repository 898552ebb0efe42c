"""The Markdown table every report writes, and the one rule for text from a result file in it."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def cell(text: object) -> str:
    """Text from a result file as one table cell: on one line, control and escape bytes gone,
    `|` escaped and `<`, `>` as entities, so a name cannot break the table or add HTML."""
    one_line = " ".join(str(text).splitlines())
    return (_CONTROL.sub("", one_line).replace("|", "\\|").replace("<", "&lt;")
            .replace(">", "&gt;"))


def image(alt: object, file: str) -> str:
    """A Markdown image whose alt text comes from a result file (`cell`'s rule, brackets too)."""
    text = cell(alt).replace("[", "\\[").replace("]", "\\]")
    return f"![{text}]({file})"


def table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """A Markdown table; the first `text_columns` columns are left-aligned, the rest right."""
    align = ["---" if i < text_columns else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
