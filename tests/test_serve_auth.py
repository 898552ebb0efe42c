"""The bearer token (serve/auth.py and the guard in front of the documentation routes)."""

from __future__ import annotations

import json

import httpx
import pytest

from veil.edge.images import encode_png
from veil.serve.app import ServerConfig, create_app
from veil.serve.server import BackgroundServer

try:  # whether or not tests/ is a package
    from tests.serve_helpers import classify, connect, files
except ModuleNotFoundError:
    from serve_helpers import classify, connect, files


# --- auth --------------------------------------------------------------------------------------
@pytest.mark.slow
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
    with BackgroundServer(app) as url, connect(url) as sock:
        # an answer at all before the body timeout (10 s) is the proof; the read timeout
        # leaves a loaded machine all the time up to it
        sock.settimeout(9)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1000000\r\n\r\n".encode())
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 401") and b"unauthorized" in reply


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
