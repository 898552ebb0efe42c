"""Text from outside (a server's labels and errors, a file's values) made safe to show: one
line, no terminal control sequences, a bounded length."""

from __future__ import annotations

import reprlib
from typing import Any

SHOWN_CHARS = 80  # the most of a value quoted in a message


def printable(text: str) -> str:
    """text with every non-printable character (newlines, ESC of ANSI/OSC sequences, other
    control and format characters) escaped as Python would write it, so what a server says
    cannot move the cursor, recolour the terminal or forge a line of output."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A value as quoted in a one-line message: its repr, bounded however deep or long the
    value is (a YAML alias expanded to a gigabyte shows its first few items), escaped, cut to
    `limit` characters."""
    text = printable(_SHORT.repr(value))
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()  # keyword arguments only from Python 3.12
    short.maxlevel, short.maxstring, short.maxlong, short.maxother = 3, 120, 40, 120
    short.maxtuple = short.maxlist = short.maxdict = short.maxset = 6
    return short


_SHORT = _short_repr()
