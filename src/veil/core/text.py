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


MAX_CLASS_NAME = 200


def check_class_names(classes: object, where: str, lines: bool = True) -> list[str]:
    """The class names a file records, if they are what every part of veil can carry (one per
    line in Triton's labels.txt, one JSON string per class in an answer): a list of distinct,
    non-empty strings of at most MAX_CLASS_NAME printable characters; else a ValueError.
    `lines=False` leaves out the rule on each name's characters (the edge takes a server's
    names as they come, and escapes them where it shows them)."""
    if not isinstance(classes, (list, tuple)) or not classes:
        raise ValueError(f"{where}: records classes {shown(classes)}, not a list of names")
    rule = (f"a non-empty line of at most {MAX_CLASS_NAME} printable characters" if lines
            else "a non-empty string")
    for name in classes:
        if not (isinstance(name, str) and name and (not lines or _one_line(name))):
            raise ValueError(f"{where}: class name {shown(name)} is not {rule}")
    duplicate = next((c for c in classes if classes.count(c) > 1), None)
    if duplicate is not None:
        raise ValueError(f"{where}: class name {shown(duplicate)} is given twice")
    return list(classes)


def _one_line(name: str) -> bool:
    return len(name) <= MAX_CLASS_NAME and name.isprintable() and name.strip() == name
