"""A small HTTP server on loopback that answers `/healthz` and `/v1/classify` the way a broken or
hostile cloud service might: NaN or negative scores, labels it never announced, endless or
trickling bodies, rate limits. Built on the standard library, so nothing of veil's server code
is involved: the client under test meets a real socket and real bytes."""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


def prediction(i: int, label: str = "cat", probability: Any = 0.9) -> dict[str, Any]:
    index = CLASSES.index(label)
    return {"index": i, "label": label, "class_index": index, "confidence": probability,
            "top_k": [{"label": label, "class_index": index, "probability": probability}]}


def good_answer(n: int) -> dict[str, Any]:
    return {"predictions": [prediction(i) for i in range(n)]}


class HostileServer:
    """`with HostileServer(answer) as server:` serves on a free port; `answer(n_images,
    handler)` writes the whole response for a classify request of n images (or returns a dict
    to send as JSON); `health` is every GET's JSON, or a function like `answer` that writes
    it. `server.images` counts the images received, `server.requests` the requests."""

    def __init__(self, answer: Callable[[int, BaseHTTPRequestHandler], Any] | None = None,
                 health: dict[str, Any] | Callable | None = None,
                 keep_body: bool = False) -> None:
        self.answer = answer or (lambda n, handler: good_answer(n))
        self.health = health if health is not None else {"classes": CLASSES, "max_images": 16}
        self.images = 0
        self.requests = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if callable(owner.health):
                    owner.health(0, self)
                else:
                    send_json(self, owner.health)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if keep_body:  # for answers that read the request (handler.last_body)
                    self.last_body = body
                n = body.count(b'filename="')
                with owner.lock:
                    owner.images += n
                    owner.requests += 1
                reply = owner.answer(n, self)
                if reply is not None:
                    send_json(self, reply)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(handler: BaseHTTPRequestHandler, body: Any, status: int = 200,
              headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()  # json writes NaN and Infinity as JavaScript does
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


def endless_body(n: int, handler: BaseHTTPRequestHandler) -> None:
    """A chunked answer that never ends (until the client hangs up)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    piece = b"[" * 65536
    try:
        handler.wfile.write(b'10\r\n{"predictions": \r\n')
        while True:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
    except OSError:
        handler.close_connection = True


def trickle(every: float) -> Callable[[int, BaseHTTPRequestHandler], None]:
    """An answer sent one byte every `every` seconds: each read is quick, the whole never is."""
    def answer(n: int, handler: BaseHTTPRequestHandler) -> None:
        data = json.dumps(good_answer(n)).encode()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            for byte in data:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(every)
        except OSError:
            handler.close_connection = True
    return answer


def trickle_headers(every: float) -> Callable[[int, BaseHTTPRequestHandler], None]:
    """Headers that never finish: a status line, then one header byte every `every` s."""
    def answer(n: int, handler: BaseHTTPRequestHandler) -> None:
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while True:
                handler.wfile.write(b"a")
                handler.wfile.flush()
                time.sleep(every)
        except OSError:
            handler.close_connection = True
    return answer


def rate_limited(times: int, retry_after: str = "0.05"
                 ) -> Callable[[int, BaseHTTPRequestHandler], Any]:
    """429 with Retry-After for the first `times` requests, then good answers."""
    seen = {"n": 0}

    def answer(n: int, handler: BaseHTTPRequestHandler) -> Any:
        seen["n"] += 1
        if seen["n"] <= times:
            send_json(handler, {"error": "rate_limited", "detail": "slow down"}, 429,
                      {"Retry-After": retry_after})
            return None
        return good_answer(n)
    return answer


def compressed(layers: int = 2, size: int = 64 * 2**20
               ) -> Callable[[int, BaseHTTPRequestHandler], None]:
    """A compression bomb: `size` bytes of spaces gzipped `layers` times (64 MiB: 64 KB, then
    a few hundred bytes), sent with `Content-Encoding: gzip, gzip`, to any request. Built on
    first use, not when a test module is collected."""
    built: list[bytes] = []

    def answer(n: int, handler: BaseHTTPRequestHandler) -> None:
        if not built:  # 1 MiB at a time: building it holds no 64 MiB buffer
            data = _gzip(b" " * 2**20 for _ in range(size >> 20))
            for _ in range(layers - 1):
                data = _gzip([data])
            built.append(data)
        data = built[0]
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Encoding", ", ".join(["gzip"] * layers))
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    return answer


def _gzip(pieces: Any) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip format
    return b"".join(packer.compress(p) for p in pieces) + packer.flush()
