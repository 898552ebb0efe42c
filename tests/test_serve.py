"""`veil serve` over real loopback sockets: classification, validation, auth, batching, fuzzing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from veil.cli import main
from veil.edge.images import encode_png
from veil.edge.obfuscators import OnnxObfuscator
from veil.serve.app import ServerConfig, create_app
from veil.serve.inference import Predictor
from veil.serve.limits import ConnectionLimits
from veil.serve.server import BackgroundServer
from veil.serve.worker import InferenceProcess

try:  # whether or not tests/ is a package
    from tests.offload_helpers import build_artifacts, png_bytes, sample_images
except ModuleNotFoundError:
    from offload_helpers import build_artifacts, png_bytes, sample_images

MAX_IMAGES = 8
MAX_BODY = 64 * 1024


class Capture:
    """What the server received, for the tests only (raw PNG bytes and decoded arrays)."""

    def __init__(self) -> None:
        self.raws: list[bytes] = []
        self.arrays: list[np.ndarray] = []
        self.lock = threading.Lock()

    def __call__(self, raws: list[bytes], images: np.ndarray) -> None:
        with self.lock:
            self.raws += raws
            self.arrays += list(images)

    def clear(self) -> None:
        with self.lock:
            self.raws, self.arrays = [], []


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return build_artifacts(tmp_path_factory.getbasetemp() / "offload")


@pytest.fixture(scope="module")
def predictor(artifacts):
    return Predictor.from_checkpoint(artifacts.classifier)


@pytest.fixture(scope="module")
def obfuscated(artifacts):
    """The bundled sample as the edge sends it: 8-bit obfuscated images."""
    return OnnxObfuscator(artifacts.onnx)(sample_images())


@pytest.fixture(scope="module")
def capture():
    return Capture()


@pytest.fixture(scope="module")
def server(predictor, capture):
    config = ServerConfig(max_batch=16, max_wait_ms=20, max_images=MAX_IMAGES,
                          max_body_bytes=MAX_BODY, body_timeout_s=1.0)
    with BackgroundServer(create_app(predictor, config, on_receive=capture)) as url:
        yield url


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server, timeout=30) as client:
        yield client


def files(*payloads: bytes) -> list:
    return [("files", (f"{i}.png", p, "image/png")) for i, p in enumerate(payloads)]


def classify(http: httpx.Client, *payloads: bytes, **params) -> httpx.Response:
    return http.post("/v1/classify", files=files(*payloads), params=params)


def metric(text: str, name: str, absent: float | None = None) -> float:
    """A sample's value; `absent` for a labelled series not yet created (else an error)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    if match is None and absent is not None:
        return absent
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


# --- the happy path ----------------------------------------------------------------------------
def test_healthz_and_openapi(http):
    health = http.get("/healthz").json()
    assert health["status"] == "ok" and health["classes"][3] == "cat"
    assert health["image_size"] == [32, 32] and health["max_images"] == MAX_IMAGES
    assert health["auth"] is False and len(health["classifier"]["sha256"]) == 64
    spec = http.get("/openapi.json").json()
    body = spec["paths"]["/v1/classify"]["post"]["requestBody"]
    assert "multipart/form-data" in body["content"]


def test_sample_over_http_matches_in_process(http, obfuscated, predictor, capture):
    capture.clear()
    labels = []
    for start in range(0, len(obfuscated), MAX_IMAGES):
        response = classify(http, *[encode_png(im) for im in obfuscated[start:start + 8]],
                            top_k=3)
        assert response.status_code == 200, response.text
        labels += [p["class_index"] for p in response.json()["predictions"]]
    expected = predictor(obfuscated).argmax(1)
    assert labels == expected.tolist()
    assert len(set(labels)) > 1
    np.testing.assert_array_equal(np.stack(capture.arrays), obfuscated)


def test_response_shape(http, obfuscated):
    body = classify(http, encode_png(obfuscated[0]), top_k=4).json()
    (p,) = body["predictions"]
    assert len(p["top_k"]) == 4 and p["top_k"][0]["label"] == p["label"]
    probs = [t["probability"] for t in p["top_k"]]
    assert probs == sorted(probs, reverse=True) and 0 < p["confidence"] <= 1
    assert body["classifier"]["model_name"] == "fastnet_tiny"


def test_the_wire_carries_the_obfuscated_image_only(artifacts, server, capture):
    from veil.edge.client import VeilClient

    capture.clear()
    originals = sample_images(6)
    with VeilClient(server, artifacts.onnx) as client:
        client.classify(list(originals))
    sent = np.stack(capture.arrays)
    np.testing.assert_array_equal(sent, OnnxObfuscator(artifacts.onnx)(originals))
    assert np.abs(sent.astype(int) - originals).mean() > 20
    for raw, original in zip(capture.raws, originals, strict=True):
        assert raw != encode_png(original)
        assert original.tobytes() not in raw


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


def _raw_request(url: str, declared: int, sent: bytes, close: bool) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /v1/classify HTTP/1.1\r\nHost: {host}\r\nContent-Length: {declared}"
                     f"\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n".encode() + sent)
        if close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


@pytest.mark.hostile
def test_truncated_upload_times_out_with_408(server, http, obfuscated):
    reply = _raw_request(server, 5000, b"--x\r\n" + bytes(100), close=False)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error"] == "body_timeout"
    assert classify(http, encode_png(obfuscated[0])).status_code == 200


@pytest.mark.hostile
def test_client_vanishing_mid_upload_leaves_the_server_serving(server, http, obfuscated):
    _raw_request(server, 5000, b"--x\r\n" + bytes(100), close=True)
    assert classify(http, encode_png(obfuscated[0])).status_code == 200
    assert http.get("/healthz").status_code == 200


# --- concurrency and metrics -------------------------------------------------------------------
def test_32_concurrent_clients_are_batched(server, http, obfuscated, predictor):
    expected = predictor(obfuscated).argmax(1)
    barrier = threading.Barrier(32)

    def one_client(k: int) -> list[tuple[int, int]]:
        got = []
        with httpx.Client(base_url=server, timeout=60) as client:
            barrier.wait()
            for i in (k, k + 32, k + 64):
                r = classify(client, encode_png(obfuscated[i]))
                assert r.status_code == 200, r.text
                got.append((i, r.json()["predictions"][0]["class_index"]))
        return got

    with ThreadPoolExecutor(32) as pool:
        results = [pair for pairs in pool.map(one_client, range(32)) for pair in pairs]
    assert len(results) == 96
    assert all(label == expected[i] for i, label in results)
    text = http.get("/metrics").text
    assert metric(text, "veil_batch_size_max") > 1
    assert metric(text, 'veil_batch_size_bucket{le="1.0"}') < metric(text, "veil_batch_size_count")


def test_metrics_count_requests_errors_and_latency(http, obfuscated):
    before = http.get("/metrics").text
    ok = 'veil_requests_total{method="POST",route="/v1/classify",status="200"}'
    classify(http, encode_png(obfuscated[0]))
    classify(http, b"not an image")
    text = http.get("/metrics").text
    assert metric(text, ok) == metric(before, ok, absent=0) + 1
    assert metric(text, 'veil_errors_total{code="not_png"}') >= 1
    assert metric(text, "veil_request_latency_seconds_count") > 0
    assert metric(text, "veil_inference_latency_seconds_count") > 0
    assert "# TYPE veil_batch_size histogram" in text
    # the exposition parses, and every metric veil documents is in it under its name
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families == {"veil_requests": "counter", "veil_errors": "counter",
                        "veil_images": "counter", "veil_batch_size": "histogram",
                        "veil_batch_size_max": "gauge", "veil_request_latency_seconds": "histogram",
                        "veil_inference_latency_seconds": "histogram",
                        "veil_queue_depth": "gauge", "veil_inference_restarts": "counter",
                        "veil_inference_timeouts": "counter"}


# --- auth --------------------------------------------------------------------------------------
@pytest.mark.hostile
def test_bearer_token(predictor, obfuscated):
    app = create_app(predictor, ServerConfig(token="s3cret-token"))
    png = encode_png(obfuscated[0])
    with BackgroundServer(app) as url, httpx.Client(base_url=url) as http:
        missing = classify(http, png)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["error"] == "unauthorized"
        wrong = http.post("/v1/classify", files=files(png),
                          headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = http.post("/v1/classify", files=files(png),
                          headers={"Authorization": "Bearer s3cret-token"})
        assert right.status_code == 200
        assert http.get("/healthz").json()["auth"] is True
        auth = {"Authorization": "Bearer s3cret-token"}
        spec = http.get("/openapi.json", headers=auth).json()
        assert "HTTPBearer" in json.dumps(spec["components"])


@pytest.mark.hostile
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_an_anonymous_classify_is_refused_from_its_headers_not_after_its_body(predictor, api):
    """Before, a 1 MiB body announced and never sent held the connection until the body
    timeout (10 s) before the 401."""
    from veil.serve.v2 import model_paths, served_model

    app = create_app(predictor, ServerConfig(token="s3cret-token"))
    path = "/v1/classify" if api == "v1" else model_paths(served_model(predictor))["infer"]
    with BackgroundServer(app) as url, _connect(url) as sock:
        sock.settimeout(5)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1000000\r\n\r\n".encode())
        started = time.monotonic()
        reply = sock.recv(65536)
        assert time.monotonic() - started < 4
    assert reply.startswith(b"HTTP/1.1 401") and b"unauthorized" in reply


def test_both_protocols_are_dispatched_by_their_routes_so_route_dependencies_run(
        predictor, obfuscated):
    # one dispatch path: FastAPI's routing serves the classifying POSTs, so what a route
    # declares (here its token dependency, overridden) runs on every request
    from veil.serve.errors import ApiError
    from veil.serve.v2 import model_paths, served_model

    app = create_app(predictor, ServerConfig(token="s3cret-token"))
    paths = {"/v1/classify", model_paths(served_model(predictor))["infer"]}
    routes = [r for r in app.routes if getattr(r, "path_format", None) in
              {"/v1/classify", "/v2/models/{name}/infer"}]
    assert len(routes) == 2 and {r.path.replace("{name}", served_model(predictor))
                                 for r in routes} == paths

    def refuse() -> None:
        raise ApiError(403, "refused_by_override", "a dependency the route declares")

    for route in routes:
        app.dependency_overrides[route.dependencies[0].dependency] = refuse
    auth = {"Authorization": "Bearer s3cret-token"}
    with BackgroundServer(app) as url, httpx.Client(base_url=url, headers=auth) as http:
        v1 = http.post("/v1/classify", files=files(encode_png(obfuscated[0])))
        v2 = http.post(model_paths(served_model(predictor))["infer"], json={"inputs": []})
        assert (v1.status_code, v1.json()["error"]) == (403, "refused_by_override")
        assert (v2.status_code, v2.json()["code"]) == (403, "refused_by_override")


@pytest.mark.parametrize("path", ["/metrics", "/openapi.json", "/docs", "/redoc"])
@pytest.mark.hostile
def test_with_a_token_metrics_and_docs_need_it_unless_made_public(predictor, path):
    auth = {"Authorization": "Bearer s3cret-token"}
    guarded = create_app(predictor, ServerConfig(token="s3cret-token"))
    with BackgroundServer(guarded) as url, httpx.Client(base_url=url) as http:
        refused = http.get(path)
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        assert http.get(path, headers=auth).status_code == 200
        assert http.get("/healthz").status_code == 200  # stays open for load balancers
    public = create_app(predictor, ServerConfig(token="s3cret-token", public_metrics=True))
    with BackgroundServer(public) as url, httpx.Client(base_url=url) as http:
        assert http.get(path).status_code == 200


@pytest.mark.hostile
def test_serve_refuses_a_public_address_without_a_token(artifacts, capsys, monkeypatch):
    monkeypatch.delenv("VEIL_TOKEN", raising=False)
    code = main(["serve", "--classifier", str(artifacts.classifier), "--host", "0.0.0.0"])
    assert code == 2
    assert "without a token" in capsys.readouterr().err


def test_serve_help_says_to_put_tls_in_front(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "TLS in front" in capsys.readouterr().out


# --- the real command, end to end --------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_veil_serve_and_veil_classify_commands(artifacts, tmp_path, capsys):
    port = _free_port()
    env = {**os.environ, "VEIL_TOKEN": "cli-token"}
    proc = subprocess.Popen([sys.executable, "-m", "veil", "serve", "--classifier",
                             str(artifacts.classifier), "--port", str(port), "--threads", "1",
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc)
        images = []
        for i, im in enumerate(sample_images(3)):
            images.append(tmp_path / f"img{i}.png")
            images[-1].write_bytes(png_bytes(im))
        (tmp_path / "token").write_text("cli-token\n")
        code = main(["classify", *map(str, images), "--server", url,
                     "--token-file", str(tmp_path / "token"),
                     "--obfuscator", str(artifacts.onnx), "--top-k", "2"])
        out = capsys.readouterr().out
        assert code == 0, out
        assert len(out.strip().splitlines()) == 3 and "img0.png: " in out
        assert _children(proc.pid), "the classifier should run in a child process by default"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").glob("*/children")
            for c in task.read_text().split()]


def _wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read().decode())
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("veil serve did not come up")


def _start_serve(artifacts, port: int) -> subprocess.Popen:
    """`veil serve` in a session of its own, so a kill takes its inference child with it."""
    proc = subprocess.Popen([sys.executable, "-m", "veil", "serve", "--classifier",
                             str(artifacts.classifier), "--port", str(port), "--threads", "1",
                             "--log-level", "warning"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    _wait_until_up(f"http://127.0.0.1:{port}", proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


@pytest.mark.hostile
def test_a_server_killed_under_load_loses_no_image(artifacts, tmp_path):
    """Four clients classify 64 files each; the server is SIGKILLed once every client has had
    one batch answered. Each client's error keeps what was answered, in order, and names the
    rest; sent again to a restarted server, the rest are answered."""
    from veil.edge.client import NotClassified, VeilClient

    clients, batch = 4, 4
    inputs = []
    for c in range(clients):
        (tmp_path / str(c)).mkdir()
        inputs.append([tmp_path / str(c) / f"{i}.png" for i in range(64)])
        for path, image in zip(inputs[-1], sample_images(64), strict=True):
            path.write_bytes(png_bytes(image))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    answered_once, killed = threading.Barrier(clients + 1), threading.Barrier(clients + 1)

    class FirstBatchThenWait(VeilClient):
        def send(self, payloads, names):
            predictions = super().send(payloads, names)
            if not self.waited:
                self.waited = True
                answered_once.wait(timeout=120)
                killed.wait(timeout=120)
            return predictions

    def classify(paths):
        with FirstBatchThenWait(url, artifacts.onnx, batch_size=batch) as client:
            client.waited = False
            return client.classify([str(p) for p in paths])

    proc = _start_serve(artifacts, port)
    try:
        with ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(classify, paths) for paths in inputs]
            answered_once.wait(timeout=120)
            _stop(proc)
            killed.wait(timeout=120)
            errors = [f.exception(timeout=120) for f in futures]
    finally:
        _stop(proc)
    assert all(isinstance(e, NotClassified) for e in errors), errors
    for e, paths in zip(errors, inputs, strict=True):
        names = [str(p) for p in paths]
        assert e.code == "no_answer" and "cannot reach" in str(e)
        assert [p.source for p in e.predictions] == names[:batch]
        assert e.unanswered == names[batch:]
        assert f"not classified: {len(names) - batch} image(s)" in str(e)

    proc = _start_serve(artifacts, port)
    try:
        with VeilClient(url, artifacts.onnx, batch_size=16) as client:
            resent = [client.classify(e.unanswered) for e in errors]
    finally:
        _stop(proc)
    for e, paths, rest in zip(errors, inputs, resent, strict=True):
        assert [p.source for p in e.predictions + rest] == [str(p) for p in paths]


# --- fuzzing the OpenAPI document --------------------------------------------------------------
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.hostile
def test_openapi_fuzzing_never_gives_a_5xx(server, mode):
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/classify", "/healthz", "/metrics"}
    strategy = st.one_of([op.as_strategy(mode) for op in operations])

    @given(case=strategy)
    @settings(max_examples=30, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def never_a_server_error(case) -> None:
        response = case.call(timeout=30)
        assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"

    never_a_server_error()


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


@pytest.mark.hostile
def test_a_failing_forward_pass_is_a_500_and_serving_continues(predictor, obfuscated):
    class Flaky:  # a Backend (serve.backend) whose first forward pass fails
        classes, info, image_size = predictor.classes, predictor.info, predictor.image_size
        state, restarts, timeouts = "ok", 0, 0
        calls = 0

        def __call__(self, images):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("simulated failure")
            return predictor(images)

    with BackgroundServer(create_app(Flaky())) as url, httpx.Client(base_url=url) as http:
        failed = classify(http, encode_png(obfuscated[0]))
        assert failed.status_code == 500
        assert failed.json() == {"error": "internal_error", "detail": "internal server error"}
        assert classify(http, encode_png(obfuscated[0])).status_code == 200
        assert 'veil_errors_total{code="internal_error"} 1' in http.get("/metrics").text


@pytest.mark.hostile
def test_a_classifier_answering_nan_is_named_a_model_fault(predictor, obfuscated):
    class NaNTail(torch.nn.Module):  # the real classifier, then NaN for the second image only
        def forward(self, x):
            logits = predictor.model(x).clone()
            logits[1:2] = float("nan")
            return logits

    faulty = Predictor(NaNTail(), predictor.classes, predictor.info, predictor.image_size)
    with BackgroundServer(create_app(faulty)) as url, httpx.Client(base_url=url) as http:
        one = encode_png(obfuscated[0])
        failed = http.post("/v1/classify", files=[("files", ("a.png", one, "image/png"))] * 2)
        assert failed.status_code == 500 and failed.json()["error"] == "model_fault"
        assert "not finite (NaN or inf) for 1 of 2 image(s)" in failed.json()["detail"]
        assert "a fault of the served model" in failed.json()["detail"]
        assert classify(http, one).status_code == 200  # a batch of one is sound: still served
        assert 'veil_errors_total{code="model_fault"} 1' in http.get("/metrics").text


@pytest.mark.hostile
def test_a_classifier_with_fewer_outputs_than_class_names_is_refused_at_load(tmp_path,
                                                                             capsys):
    from veil.models.external import export_classifier

    five = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5))
    path = export_classifier(five, tmp_path / "five.pt2", [f"c{i}" for i in range(10)],
                             (32, 32), "five-outputs")
    with pytest.raises(ValueError, match="gives 5 outputs, but the data has 10 classes"):
        Predictor.from_checkpoint(path)
    assert main(["serve", "--classifier", str(path), "--inference", "thread"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gives 5 outputs" in err


# --- the classifier in a child process (`veil serve --inference process`, the default) ---------
@pytest.fixture(scope="module")
def inference_process(artifacts):
    with InferenceProcess(artifacts.classifier, threads=1) as worker:
        yield worker


def test_inference_process_answers_like_the_in_process_predictor(inference_process, predictor,
                                                                 obfuscated):
    assert inference_process.classes == predictor.classes
    assert inference_process.image_size == predictor.image_size
    assert inference_process.info == predictor.info
    assert inference_process.pid != os.getpid()
    probs = inference_process(obfuscated)
    assert probs.dtype == np.float32 and probs.shape == (len(obfuscated), len(predictor.classes))
    np.testing.assert_allclose(probs, predictor(obfuscated), atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(1), predictor(obfuscated).argmax(1))


def test_inference_process_reports_a_failed_batch_and_keeps_serving(inference_process,
                                                                    obfuscated):
    pid = inference_process.pid
    with pytest.raises(RuntimeError, match="inference failed: ValueError: cannot reshape"):
        inference_process(np.zeros((3, 8, 8, 3), np.uint8))  # not the classifier's size
    assert inference_process(obfuscated[:2]).shape[0] == 2
    assert inference_process.pid == pid and inference_process.restarts == 0


@pytest.mark.hostile
def test_a_killed_inference_process_is_replaced_and_the_server_keeps_serving(artifacts,
                                                                             obfuscated, caplog):
    caplog.set_level("WARNING", logger="veil.serve")
    # generous timeouts: a replacement loads torch and the model afresh, which takes far longer
    # than 5 s on a loaded machine (this test is about deaths, not timeouts)
    with InferenceProcess(artifacts.classifier, threads=1, batch_timeout_s=120) as worker, \
            BackgroundServer(create_app(worker)) as url, \
            httpx.Client(base_url=url, timeout=120) as http:
        assert classify(http, encode_png(obfuscated[0])).status_code == 200
        pids = [worker.pid]
        for kills in (1, 2, 3):  # every replacement is counted, each with its real cause
            os.kill(pids[-1], signal.SIGKILL)
            _wait_for_exit(pids[-1])
            answer = classify(http, encode_png(obfuscated[0]))
            assert answer.status_code == 200, answer.text
            pids.append(worker.pid)
            assert worker.restarts == kills
        assert len(set(pids)) == 4 and None not in pids
        second = pids[-1]
        assert metric(http.get("/metrics").text, "veil_inference_restarts_total") == 3
    replaced = [r.getMessage() for r in caplog.records if "starting a new one" in r.getMessage()]
    assert len(replaced) == 3 and all("killed by SIGKILL" in m for m in replaced), replaced
    assert worker.pid is None
    with pytest.raises(ProcessLookupError):  # closing stopped and reaped the child
        os.kill(second, 0)
    with pytest.raises(RuntimeError, match="has been closed"):
        worker(obfuscated[:1])


@pytest.mark.hostile
def test_a_batch_on_which_the_inference_process_keeps_dying_fails(artifacts, obfuscated,
                                                                  monkeypatch):
    with InferenceProcess(artifacts.classifier, threads=1) as worker:
        def dies(images):
            os.kill(worker.pid, signal.SIGKILL)
            raise EOFError

        monkeypatch.setattr(worker, "_exchange", dies)
        with pytest.raises(RuntimeError, match="died twice on the same batch"):
            worker(obfuscated[:1])
        assert worker.restarts == 1
        monkeypatch.undo()
        assert worker(obfuscated[:1]).shape == (1, len(worker.classes))  # a fresh one serves
        assert worker.restarts == 2


def test_inference_process_names_a_checkpoint_it_cannot_load(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=r"could not load .*bad\.pt: CheckpointError"):
        InferenceProcess(bad)


def test_load_predictor_modes(artifacts, tmp_path):
    from veil.serve.cli import load_predictor

    in_thread = load_predictor(artifacts.classifier, 1, "thread")
    assert isinstance(in_thread, Predictor)
    with load_predictor(artifacts.classifier, 1, "process") as in_child:
        assert isinstance(in_child, InferenceProcess) and in_child.classes == in_thread.classes
    with pytest.raises(FileNotFoundError, match="no such classifier checkpoint"):
        load_predictor(tmp_path / "missing.pt", 1, "process")


def _wait_for_exit(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").is_file() and " Z " in Path(f"/proc/{pid}/stat").read_text():
            return  # a zombie: dead, waiting for its parent to reap it
        time.sleep(0.05)
    raise AssertionError(f"process {pid} is still running")


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


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("10.0.0.1", False), ("::", False),
    # a name that merely starts like a loopback address proves nothing: it may resolve anywhere
    ("127.evil.example", False), ("no-such-host.invalid", False),
])
@pytest.mark.hostile
def test_loopback_is_decided_from_addresses_not_from_a_string_prefix(host, loopback):
    from veil.serve.server import is_loopback
    assert is_loopback(host) is loopback


@pytest.mark.hostile
def test_a_stuck_inference_process_is_replaced_and_the_batch_answered_503(artifacts, obfuscated):
    with InferenceProcess(artifacts.classifier, threads=1, batch_timeout_s=1.0) as worker, \
            BackgroundServer(create_app(worker)) as url, httpx.Client(base_url=url,
                                                                      timeout=60) as http:
        assert classify(http, encode_png(obfuscated[0])).status_code == 200
        assert http.get("/healthz").json()["inference"] == "ok"
        stuck = worker.pid
        os.kill(stuck, signal.SIGSTOP)
        try:
            start = time.monotonic()
            answer = classify(http, encode_png(obfuscated[0]))
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "inference_timeout"
            assert answer.headers["Retry-After"].isdigit()
            assert time.monotonic() - start < 30  # not forever
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stuck, signal.SIGCONT)
        assert worker.pid not in (None, stuck) and worker.timeouts == 1
        assert worker.restarts == 1
        health = http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert classify(http, encode_png(obfuscated[0])).status_code == 200
        text = http.get("/metrics").text
        assert metric(text, "veil_inference_timeouts_total") == 1
        assert metric(text, "veil_inference_restarts_total") == 1
    _wait_for_exit(stuck)


@pytest.mark.hostile
def test_healthz_says_degraded_while_the_inference_process_is_replaced(artifacts):
    class Restarting:  # a Backend (serve.backend) whose inference process is being replaced
        classes, info, image_size, state = ["a", "b"], {"model_name": "x"}, (32, 32), "restarting"
        restarts, timeouts = 1, 0

        def __call__(self, images):
            raise AssertionError("not called")

    with BackgroundServer(create_app(Restarting())) as url, httpx.Client(base_url=url) as http:
        health = http.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert health.json()["inference"] == "restarting"


def test_the_inference_timeout_must_be_positive(artifacts):
    with pytest.raises(ValueError, match="inference timeout must be positive"):
        InferenceProcess(artifacts.classifier, batch_timeout_s=0)


# --- hostile connections: huge or endless request heads, one host holding every slot ----------
GUARDS = ConnectionLimits(max_header_bytes=8192, max_headers=20, head_timeout_s=0.6,
                          max_connections=64, max_connections_per_host=4)


@pytest.fixture(scope="module")
def guarded_server(predictor):
    with BackgroundServer(create_app(predictor, ServerConfig()), limits=GUARDS) as url:
        yield url


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _send_until_answered(sock: socket.socket, head: bytes, filler: bytes, most: int
                         ) -> tuple[bytes, int]:
    """Send head, then filler over and over (up to `most` bytes) until the server answers."""
    sock.sendall(head)
    sent = len(head)
    sock.setblocking(False)
    try:
        while sent < most:
            try:
                sock.send(filler)
                sent += len(filler)
            except BlockingIOError:
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
            with contextlib.suppress(BlockingIOError):
                if reply := sock.recv(65536):
                    return reply, sent
    finally:
        sock.setblocking(True)
    return _read_all(sock), sent


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.hostile
def test_a_64_mib_header_is_answered_431_before_it_is_read(guarded_server):
    with _connect(guarded_server) as sock:
        reply, sent = _send_until_answered(sock, b"GET /healthz HTTP/1.1\r\nX-Big: ",
                                           b"a" * 65536, most=64 << 20)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]
    assert sent < 8 << 20, f"the server read {sent} bytes of a header before refusing it"


def _head_of(size: int, path: bytes = b"/healthz") -> bytes:
    """A complete GET head of exactly `size` bytes (padding in one header field)."""
    start = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


@pytest.mark.hostile
@pytest.mark.parametrize("size", [8193, 9000, 33 << 10, 60 << 10])
def test_a_head_over_the_limit_is_431_even_when_it_arrives_in_one_piece(guarded_server, size):
    """The head was measured only while incomplete: one read that completed it reached the app."""
    with _connect(guarded_server) as sock:
        sock.sendall(_head_of(size))
        reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]
    assert b"request head larger than 8192 bytes" in reply


@pytest.mark.hostile
def test_a_head_of_exactly_the_limit_is_served(guarded_server):
    with _connect(guarded_server) as sock:
        sock.sendall(_head_of(8192))
        assert _read_all(sock).startswith(b"HTTP/1.1 200")


@pytest.mark.hostile
def test_a_pipelined_oversized_second_head_is_431(guarded_server):
    with _connect(guarded_server) as sock:
        first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(first + _head_of(9000))
        reply = _read_all(sock)
    # the connection is refused at the second head (the first's answer may not be written yet)
    assert b"HTTP/1.1 431" in reply and reply.count(b"HTTP/1.1 ") <= 2


@pytest.mark.hostile
def test_an_oversized_head_is_refused_in_the_v2_shape_when_it_asks_for_v2(guarded_server):
    with _connect(guarded_server) as sock:
        sock.sendall(_head_of(9000, b"/v2/health/ready"))
        reply = _read_all(sock)
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["code"] == "head_too_large"


@pytest.mark.hostile
def test_30000_headers_are_answered_431(guarded_server):
    with _connect(guarded_server) as sock:
        reply, _ = _send_until_answered(sock, b"GET /healthz HTTP/1.1\r\n", b"X-A: b\r\n" * 500,
                                        most=30000 * 8)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]


@pytest.mark.hostile
def test_21_small_headers_are_431_and_20_are_served(guarded_server):
    def request(n: int) -> bytes:
        with _connect(guarded_server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-%d: v\r\n" % i for i in range(n - 1))
                         + b"Connection: close\r\n\r\n")
            return _read_all(sock)
    assert request(21).startswith(b"HTTP/1.1 431")
    assert request(19).startswith(b"HTTP/1.1 200")  # 19 + Host = 20 fields


@pytest.mark.hostile
@pytest.mark.parametrize("path, shape", [
    (b"/v2/models/fastnet_tiny/infer", {"error": "more than 20 header fields",
                                        "code": "head_too_large"}),
    (b"/healthz", {"error": "head_too_large", "detail": "more than 20 header fields"})])
def test_a_refused_head_is_answered_in_the_json_shape_of_its_api(guarded_server, path, shape):
    with _connect(guarded_server) as sock:
        sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n"
                     + b"".join(b"X-%d: v\r\n" % i for i in range(30)) + b"\r\n")
        reply = _read_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431") and b"content-type: application/json" in head
    assert json.loads(body) == shape


@pytest.mark.hostile
def test_a_content_length_httptools_cannot_parse_is_a_json_400_under_v2(guarded_server):
    with _connect(guarded_server) as sock:
        sock.sendall(b"POST /v2/models/fastnet_tiny/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 12abc\r\n\r\n{}")
        reply = _read_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:80]
    assert json.loads(body) == {"error": "Invalid HTTP request received.",
                                "code": "bad_http_request"}


@pytest.mark.parametrize("trickle", [b"", b"GET /healthz HTTP/1.1\r\nX-Slow: "],
                         ids=["silent", "slowloris"])
@pytest.mark.hostile
def test_a_request_head_that_never_ends_is_closed_408(guarded_server, trickle):
    start = time.monotonic()
    with _connect(guarded_server) as sock:
        sock.sendall(trickle)
        reply = b""
        sock.settimeout(0.1)
        while time.monotonic() - start < 10 and not reply:
            with contextlib.suppress(TimeoutError, BrokenPipeError):
                if trickle:
                    sock.send(b"a")  # one byte every 0.1 s keeps a naive server waiting
                reply = sock.recv(65536)
    waited = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
    assert GUARDS.head_timeout_s <= waited < GUARDS.head_timeout_s + 3


def test_the_installed_uvicorn_is_in_the_pinned_range_and_has_what_the_guards_use():
    from importlib.metadata import version

    import tomllib
    from packaging.requirements import Requirement

    from veil.serve.protocol import check_uvicorn

    serve = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pins = [Requirement(r) for r in serve["project"]["optional-dependencies"]["serve"]]
    uvicorn_pin = next(r for r in pins if r.name == "uvicorn")
    assert uvicorn_pin.specifier.contains(version("uvicorn")), uvicorn_pin
    check_uvicorn()


def test_a_uvicorn_whose_protocol_changed_is_refused_loudly():
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from veil.serve.protocol import check_uvicorn

    changed = type("Changed", (), {name: getattr(HttpToolsProtocol, name)
                                   for name in ("connection_made", "connection_lost",
                                                "data_received", "on_body")})
    with pytest.raises(RuntimeError, match="no longer has on_message_begin, on_url, on_header, "
                                           "on_headers_complete.*--no-connection-guards"):
        check_uvicorn(changed)


def test_keep_alive_requests_are_not_cut_by_the_head_timeout(guarded_server):
    with httpx.Client(base_url=guarded_server, timeout=10) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(GUARDS.head_timeout_s / 2)


@pytest.mark.hostile
def test_one_host_cannot_hold_every_connection(predictor):
    limits = ConnectionLimits(max_connections_per_host=3, head_timeout_s=30)
    with BackgroundServer(create_app(predictor, ServerConfig()), limits=limits) as url:
        held = [_connect(url) for _ in range(3)]
        try:
            time.sleep(0.2)
            with _connect(url) as extra:
                assert _read_all(extra).startswith(b"HTTP/1.1 503")
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("field", ["max_header_bytes", "max_headers", "max_connections",
                                   "max_connections_per_host", "head_timeout_s"])
def test_connection_limits_must_be_positive(field):
    with pytest.raises(ValueError, match=field):
        ConnectionLimits(**{field: 0})


@pytest.mark.hostile
@pytest.mark.parametrize("option, message", [
    (["--port", "85116"], "argument --port: port 85116: must be from 1 to 65535"),
    (["--port", "-1"], "argument --port: port -1: must be from 1 to 65535"),
    (["--inference-timeout", "nan"], "the inference timeout must be positive and finite"),
    (["--inference-timeout", "inf"], "the inference timeout must be positive and finite"),
    (["--head-timeout", "inf"], "head_timeout_s must be positive and finite (at most 86400 s)"),
    (["--max-wait-ms", "1e9"], "max_wait_ms must be from 0 to 1000, got 1000000000.0"),
    (["--max-wait-ms", "nan"], "max_wait_ms must be from 0 to 1000, got nan"),
    (["--max-batch", "0"], "max_batch must be at least 1, got 0"),
])
def test_a_serve_option_out_of_range_is_refused_before_the_banner(artifacts, capsys, option,
                                                                  message):
    try:
        code = main(["serve", "--classifier", str(artifacts.classifier), *option])
        usage = False
    except SystemExit as e:  # argparse's own refusal, after its usage lines
        code, usage = e.code, True
    out, err = capsys.readouterr()
    assert code == 2 and message in err, err
    assert "serving" not in out and (usage or len(err.strip().splitlines()) == 1), err
