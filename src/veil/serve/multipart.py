"""A fast path for the multipart bodies every ordinary client sends.

Parsing multipart with python-multipart costs about as much CPU as classifying the image, so
bodies of the plain, common shape (CRLF line ends, each part with a form-data
Content-Disposition and at most a Content-Type header) are split here directly. Anything else,
well-formed or not, returns None and goes through Starlette's full parser, so this path only
has to be right for what it accepts.
"""

from __future__ import annotations

import re

BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.I)
DISPOSITION = re.compile(rb'form-data; name="([A-Za-z0-9_\-\[\]]{1,64})"'
                         rb'(?:; filename="([^"\\\r\n]{0,255})")?')
Part = tuple[str, bool, bytes]  # field name, is a file, content


def split_simple(body: bytes, content_type: str) -> list[Part] | None:
    """The parts of a plain multipart/form-data body, or None when it is not that plain."""
    match = BOUNDARY.search(content_type)
    if match is None:
        return None
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    closing = b"\r\n" + delimiter + b"--"
    if not body.startswith(delimiter + b"\r\n"):
        return None
    end = body.find(closing)
    if end < 0 or body[end + len(closing):] not in (b"", b"\r\n"):
        return None
    parts = []
    for chunk in body[len(delimiter) + 2:end].split(b"\r\n" + delimiter + b"\r\n"):
        part = _part(chunk)
        if part is None:
            return None
        parts.append(part)
    return parts


def _part(chunk: bytes) -> Part | None:
    head, separator, content = chunk.partition(b"\r\n\r\n")
    if not separator:
        return None
    lines = head.split(b"\r\n")
    if len(lines) > 2:
        return None
    name = filename = None
    for line in lines:
        key, _, value = line.partition(b":")
        key, value = key.strip().lower(), value.strip()
        if key == b"content-disposition":
            match = DISPOSITION.fullmatch(value)
            if match is None:
                return None
            name, filename = match.group(1), match.group(2)
        elif key != b"content-type":
            return None
    if name is None:
        return None
    return name.decode("ascii"), filename is not None, content
