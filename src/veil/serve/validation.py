"""Strict decoding of the images a client sends: 8-bit RGB PNG of exactly the expected size.

The PNG header is checked before any pixel is decoded, so an oversized or odd image costs
nothing; every failure becomes an ApiError with an HTTP status and a message for the client.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import Image

from ..core.wire import PNG_SIGNATURE
from .errors import ApiError

PNG_COLOR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
OTHER_FORMATS = {b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"RIFF": "RIFF/WebP",
                 b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def decode_png(data: bytes, size: tuple[int, int], name: str = "image") -> np.ndarray:
    """PNG bytes -> uint8 (H, W, 3), or an ApiError saying what is wrong with them."""
    if not data:
        raise ApiError(400, "empty_file", f"{name}: the file is empty")
    if not data.startswith(PNG_SIGNATURE):
        kind = next((k for magic, k in OTHER_FORMATS.items() if data.startswith(magic)), None)
        what = f"a {kind} image" if kind else "not an image"
        raise ApiError(415, "not_png", f"{name}: {what}; send the obfuscated image as PNG")
    width, height, depth, color = _png_header(data, name)
    if (height, width) != tuple(size):
        raise ApiError(422, "wrong_size", f"{name}: image is {width}x{height}, the classifier "
                                          f"expects {size[1]}x{size[0]}")
    if color != 2 or depth != 8:
        mode = PNG_COLOR_TYPES.get(color, f"color type {color}")
        raise ApiError(422, "wrong_mode", f"{name}: PNG is {depth}-bit {mode}, expected 8-bit "
                                          f"RGB (no alpha, no palette)")
    simple = decode_simple_png(data, width, height)
    if simple is not None:
        return simple
    _check_integrity(data, width, height, name)
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
            im.load()
            array = np.asarray(im)
    except Exception as e:  # Pillow raises many types on hostile input
        raise ApiError(400, "corrupt_image", f"{name}: truncated or corrupt PNG "
                                             f"({_without_reprs(e)})") from None
    if array.shape != (height, width, 3) or array.dtype != np.uint8:
        raise ApiError(422, "wrong_mode", f"{name}: decoded to {array.dtype} {array.shape}")
    return array


def decode_simple_png(data: bytes, width: int, height: int) -> np.ndarray | None:
    """A valid non-interlaced 8-bit RGB PNG whose rows all use one filter among None, Sub and
    Up (what veil's client sends), decoded with zlib and numpy. None for anything else, valid or
    not: Pillow then decodes it or says what is wrong with it."""
    if data[26:29] != b"\x00\x00\x00":  # compression, filter method, interlace
        return None
    idat = _idat(data)
    if idat is None:
        return None
    expected = height * (1 + 3 * width)
    try:
        raw, complete = _inflate(idat, expected)
    except zlib.error:
        return None
    if len(raw) != expected or not complete:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, 1 + 3 * width)
    kind = rows[0, 0]
    if kind > 2 or (rows[:, 0] != kind).any():
        return None
    pixels = rows[:, 1:].reshape(height, width, 3)
    if kind == 1:
        return np.cumsum(pixels, axis=1, dtype=np.uint8)
    if kind == 2:
        return np.cumsum(pixels, axis=0, dtype=np.uint8)
    return pixels.copy()


class _BrokenPng(ValueError):
    """A chunk is cut short, fails its CRC, or IEND never comes (the text says which)."""


def _chunks(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """(position, kind, payload) of every chunk after the signature, up to and including IEND;
    `_BrokenPng` as soon as one is not whole."""
    pos = 8
    while True:
        if pos + 12 > len(data):
            raise _BrokenPng("truncated PNG (no IEND chunk)")
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, end = data[pos + 4:pos + 8], pos + 8 + length
        label = kind.decode("ascii", "replace") if kind.isalpha() else "?"
        if end + 4 > len(data):
            raise _BrokenPng(f"truncated PNG (chunk {label} is cut)")
        if zlib.crc32(data[pos + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
            raise _BrokenPng(f"chunk {label} fails its CRC check")
        yield pos, kind, data[pos + 8:end]
        if kind == b"IEND":
            return
        pos = end + 4


def _inflate(idat: bytes, expected: int) -> tuple[bytes, bool]:
    """At most expected + 1 bytes of the zlib stream, and whether the stream ended there."""
    inflater = zlib.decompressobj()
    raw = inflater.decompress(idat, expected + 1)
    return raw, inflater.eof


def _idat(data: bytes) -> bytes | None:
    """The IDAT payload, if every chunk up to IEND is whole, has a valid CRC, and no critical
    chunk other than IHDR (first), IDAT and IEND appears."""
    parts = []
    try:
        for pos, kind, payload in _chunks(data):
            if kind == b"IDAT":
                parts.append(payload)
            elif kind != b"IEND" and not _allowed_chunk(kind, pos):
                return None
    except _BrokenPng:
        return None
    return b"".join(parts)


def _check_integrity(data: bytes, width: int, height: int, name: str) -> None:
    """Before Pillow sees it (it zero-fills missing rows): every chunk whole with a valid CRC up
    to IEND, and, for a non-interlaced image, a zlib stream that holds every row."""
    try:
        idat = b"".join(payload for _, kind, payload in _chunks(data) if kind == b"IDAT")
    except _BrokenPng as e:
        raise ApiError(400, "corrupt_image", f"{name}: {e}") from None
    if data[28] != 0:  # interlaced: rows are not contiguous, leave the count to Pillow
        return
    expected = height * (1 + 3 * width)
    try:
        raw, complete = _inflate(idat, expected)
    except zlib.error as e:
        raise ApiError(400, "corrupt_image", f"{name}: corrupt image data ({e})") from None
    if len(raw) < expected or not complete:
        rows = len(raw) // (1 + 3 * width)
        raise ApiError(400, "corrupt_image", f"{name}: image data ends early ({rows} of "
                                             f"{height} rows)")


def _without_reprs(error: Exception) -> str:
    """An exception's text without Python object reprs such as <_io.BytesIO object at 0x...>."""
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the upload", str(error))


def _allowed_chunk(kind: bytes, pos: int) -> bool:
    """IHDR only first; no other critical chunk (PLTE...), any ancillary one."""
    return pos == 8 if kind == b"IHDR" else bool(kind[0] & 0x20)


def _png_header(data: bytes, name: str) -> tuple[int, int, int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ApiError(400, "corrupt_image", f"{name}: truncated PNG (no image header)")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    return width, height, data[24], data[25]
