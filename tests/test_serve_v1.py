"""/v1's codec (serve/v1.py, multipart.py, validation.py): bad uploads answered 4xx while the
server keeps serving, the multipart fast path against Starlette's parser, PNG decoding."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from veil.edge.images import encode_png
from veil.serve.app import ServerConfig

try:  # whether or not tests/ is a package
    from tests.offload_helpers import png_bytes, sample_images
    from tests.serve_helpers import MAX_BODY, MAX_IMAGES, classify, files
except ModuleNotFoundError:
    from offload_helpers import png_bytes, sample_images
    from serve_helpers import MAX_BODY, MAX_IMAGES, classify, files


# --- bad inputs -> 4xx, then the server still serves -------------------------------------------
def _rgb(size=(32, 32)):
    return np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)


def _truncated_multipart() -> tuple[bytes, dict]:
    boundary = "veilboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"0.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    body += png_bytes(_rgb())[:100]
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


BAD_UPLOADS = {
    "wrong_size": (files(png_bytes(_rgb((16, 16)))), 422, "wrong_size"),
    "not_an_image": (files(b"hello, this is text"), 415, "not_png"),
    "jpeg": (files(png_bytes(_rgb(), format="JPEG")), 415, "not_png"),
    "greyscale": (files(png_bytes(_rgb()[..., 0])), 422, "wrong_mode"),
    "rgba": (files(png_bytes(np.dstack([_rgb(), _rgb()[..., :1]]))), 422, "wrong_mode"),
    "palette": (files(png_bytes(_rgb()[..., 0], "P")), 422, "wrong_mode"),
    "16_bit": (files(png_bytes(_rgb()[..., 0].astype(np.uint16) * 257)), 422, "wrong_mode"),
    "truncated_png": (files(png_bytes(_rgb())[:-200]), 400, "corrupt_image"),
    "truncated_veil_png": (files(encode_png(_rgb())[:-100]), 400, "corrupt_image"),
    "header_only": (files(png_bytes(_rgb())[:20]), 400, "corrupt_image"),
    "empty_file": (files(b""), 400, "empty_file"),
    "too_many_images": (files(*[png_bytes(_rgb())] * (MAX_IMAGES + 1)), 413, "too_many_images"),
    "body_too_large": (files(b"\x89PNG" + bytes(MAX_BODY)), 413, "body_too_large"),
    "text_field": ([("files", (None, "abc"))], 400, "not_a_file"),
    "other_field": ([("photo", ("0.png", png_bytes(_rgb()), "image/png"))], 400,
                    "unexpected_field"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
@pytest.mark.hostile
def test_bad_upload_is_rejected_then_serving_continues(http, obfuscated, case):
    upload, status, code = BAD_UPLOADS[case]
    response = http.post("/v1/classify", files=upload)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and response.json()["detail"]
    assert classify(http, encode_png(obfuscated[0])).status_code == 200


@pytest.mark.parametrize("request_kwargs, status, code", [
    ({"json": {"images": []}}, 415, "not_multipart"),
    ({"content": _truncated_multipart()[0], "headers": _truncated_multipart()[1]}, 400, None),
    ({"content": b"--x--\r\n", "headers": {"content-type": "multipart/form-data; boundary=x"}},
     400, "no_images"),
])
@pytest.mark.hostile
def test_bad_body_is_rejected(http, obfuscated, request_kwargs, status, code):
    response = http.post("/v1/classify", **request_kwargs)
    assert response.status_code == status, response.text
    assert code is None or response.json()["error"] == code
    assert classify(http, encode_png(obfuscated[0])).status_code == 200


@pytest.mark.parametrize("method, path, params, status", [
    ("POST", "/v1/classify", {"top_k": 0}, 422),
    ("POST", "/v1/classify", {"top_k": 11}, 422),
    ("POST", "/v1/classify", {"top_k": "abc"}, 422),
    ("POST", "/v1/classify", {"top_k": "7" * 5000}, 422),  # past int()'s digit limit
    ("GET", "/v1/classify", {}, 405),
    ("GET", "/nowhere", {}, 404),
])
@pytest.mark.hostile
def test_bad_request_line(http, obfuscated, method, path, params, status):
    kwargs = {"files": files(encode_png(obfuscated[0]))} if method == "POST" else {}
    response = http.request(method, path, params=params, **kwargs)
    assert response.status_code == status
    assert set(response.json()) == {"error", "detail"}
    assert classify(http, encode_png(obfuscated[0])).status_code == 200


# --- the multipart fast path -------------------------------------------------------------------
def _encoded(upload: list) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://127.0.0.1/", files=upload)
    return request.read(), request.headers["content-type"]


async def _starlette_parts(body: bytes, content_type: str) -> list:
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    async def stream():
        yield body

    form = await MultiPartParser(Headers({"content-type": content_type}), stream()).parse()
    return [(k, not isinstance(v, str), v.encode() if isinstance(v, str) else await v.read())
            for k, v in form.multi_items()]


@pytest.mark.parametrize("upload", [
    files(png_bytes(_rgb())),
    files(*[png_bytes(_rgb((8, 8)))] * 3),
    [("files", (None, "text")), ("other", ("x.bin", b"\r\n--\r\n", "application/octet-stream"))],
])
def test_fast_multipart_path_agrees_with_starlette(upload):
    import asyncio

    from veil.serve.multipart import split_simple

    body, content_type = _encoded(upload)
    assert split_simple(body, content_type) == asyncio.run(_starlette_parts(body, content_type))


def test_fast_multipart_path_declines_anything_unusual():
    from veil.serve.multipart import split_simple

    body, content_type = _encoded(files(png_bytes(_rgb())))
    boundary = content_type.split("boundary=")[1].encode()
    assert split_simple(body, "multipart/form-data") is None
    assert split_simple(b"preamble\r\n" + body, content_type) is None
    assert split_simple(body.replace(b"\r\n", b"\n"), content_type) is None
    assert split_simple(body[:-10], content_type) is None
    assert split_simple(body.replace(b"Content-Type:", b"X-Other:"), content_type) is None
    early_end = body.replace(b"\r\n\r\n", b"\r\n\r\nab\r\n--" + boundary + b"--\r\n", 1)
    assert split_simple(early_end, content_type) is None


def test_config_keeps_uploads_in_memory():
    from starlette.formparsers import MultiPartParser

    with pytest.raises(ValueError, match="in memory"):
        ServerConfig(max_body_bytes=MultiPartParser.spool_max_size + 1)
    with pytest.raises(ValueError, match="max_images"):
        ServerConfig(max_images=0)


def test_fast_png_decoding_matches_pillow():
    from veil.serve.validation import decode_png, decode_simple_png

    for image in [_rgb(), *sample_images(20)]:
        fast = encode_png(image)  # what veil's client sends: decoded without Pillow
        np.testing.assert_array_equal(decode_simple_png(fast, 32, 32), image)
        adaptive = png_bytes(image)  # Pillow's Paeth rows: left to Pillow
        assert decode_simple_png(adaptive, 32, 32) is None
        np.testing.assert_array_equal(decode_png(adaptive, (32, 32)), image)
    crc_broken = bytearray(encode_png(_rgb()))
    crc_broken[-20] ^= 0xFF
    assert decode_simple_png(bytes(crc_broken), 32, 32) is None


# --- PNGs that are whole on the outside and broken inside -----------------------------------
def _png(rows: bytes, width: int = 32, height: int = 32, extra: bytes = b"") -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.hostile
def test_a_png_whose_image_data_ends_early_is_refused(http, obfuscated):
    from veil.serve.errors import ApiError
    from veil.serve.validation import decode_png
    row = b"\x00" + bytes(range(96))
    half = _png(row * 16)  # a complete zlib stream that holds 16 of the 32 rows
    with pytest.raises(ApiError, match=r"image data ends early \(16 of 32 rows\)"):
        decode_png(half, (32, 32))
    response = http.post("/v1/classify", files=files(half))
    assert response.status_code == 400 and response.json()["error"] == "corrupt_image"
    assert decode_png(_png(row * 32), (32, 32)).shape == (32, 32, 3)  # the whole one decodes
    assert classify(http, encode_png(obfuscated[0])).status_code == 200


@pytest.mark.hostile
def test_a_crc_error_in_any_chunk_is_refused_the_same_way():
    import struct
    import zlib

    from veil.serve.errors import ApiError
    from veil.serve.validation import decode_png
    text = b"Comment\x00hello"
    bad_text = (struct.pack(">I", len(text)) + b"tEXt" + text
                + struct.pack(">I", zlib.crc32(b"tEXt" + text) ^ 1))
    with pytest.raises(ApiError, match="chunk tEXt fails its CRC check"):
        decode_png(_png((b"\x00" + bytes(96)) * 32, extra=bad_text), (32, 32))


@pytest.mark.hostile
def test_error_texts_show_no_python_object_reprs():
    from veil.serve.validation import _without_reprs
    err = OSError("cannot identify image file <_io.BytesIO object at 0x7f3a2b1c9d50>")
    assert _without_reprs(err) == "cannot identify image file the upload"
