"""`veil serve` wired (serve/app.py, status.py, v1.py's answers): the happy path over real
loopback sockets, /healthz and /metrics, one dispatch path for both protocols, fuzzing the
OpenAPI document."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from veil.edge.images import encode_png
from veil.edge.obfuscators import OnnxObfuscator
from veil.serve.app import ServerConfig, create_app
from veil.serve.server import BackgroundServer

try:  # whether or not tests/ is a package
    from tests.offload_helpers import sample_images
    from tests.serve_helpers import MAX_IMAGES, classify, files, metric
except ModuleNotFoundError:
    from offload_helpers import sample_images
    from serve_helpers import MAX_IMAGES, classify, files, metric


# --- the happy path ----------------------------------------------------------------------------
def test_healthz_and_openapi(http):
    health = http.get("/healthz").json()
    assert health["status"] == "ok" and health["classes"][3] == "cat"
    assert health["image_size"] == [32, 32] and health["max_images"] == MAX_IMAGES
    assert health["auth"] is False and len(health["classifier"]["sha256"]) == 64
    spec = http.get("/openapi.json").json()
    body = spec["paths"]["/v1/classify"]["post"]["requestBody"]
    assert "multipart/form-data" in body["content"]


@pytest.mark.slow
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


# --- fuzzing the OpenAPI document --------------------------------------------------------------
@pytest.mark.slow
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
