"""The Open Inference Protocol (KServe v2) of `veil serve`, spoken by a client nobody here wrote
(tritonclient[http]) and by hand, over real loopback sockets."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from veil.cli import main
from veil.edge.client import ServerError, VeilClient
from veil.serve.app import ServerConfig, create_app
from veil.serve.server import BackgroundServer

try:  # whether or not tests/ is a package
    from tests.hostile_server import HostileServer, send_json
    from tests.offload_helpers import png_bytes, sample_images
except ModuleNotFoundError:
    from hostile_server import HostileServer, send_json
    from offload_helpers import png_bytes, sample_images

MODEL = "fastnet_tiny"  # the model name recorded in the test classifier
MAX_IMAGES = 8
TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def server(predictor):
    config = ServerConfig(max_batch=16, max_wait_ms=5, max_images=MAX_IMAGES,
                          max_body_bytes=256 * 1024, body_timeout_s=2.0)
    with BackgroundServer(create_app(predictor, config)) as url:
        yield url


@pytest.fixture(scope="module")
def guarded(predictor):
    with BackgroundServer(create_app(predictor, ServerConfig(token=TOKEN))) as url:
        yield url


@pytest.fixture()
def client(server):
    c = triton.InferenceServerClient(url=server.removeprefix("http://"), network_timeout=30)
    yield c
    c.close()


@pytest.fixture()
def http(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def v1_probabilities(http: httpx.Client, images: np.ndarray, classes: int) -> np.ndarray:
    files = [("files", (f"{i}.png", png_bytes(im), "image/png")) for i, im in enumerate(images)]
    answer = http.post("/v1/classify", files=files, params={"top_k": classes}).json()
    probs = np.zeros((len(images), classes), np.float32)
    for row, p in zip(probs, answer["predictions"], strict=True):
        for t in p["top_k"]:
            row[t["class_index"]] = t["probability"]
    return probs


def images_input(images: np.ndarray, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images, binary_data=binary)
    return tensor


# --- tritonclient: health, metadata, inference -------------------------------------------------
def test_tritonclient_sees_a_live_ready_server_and_the_model(client, predictor):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    server = client.get_server_metadata()
    assert server["name"] == "veil"
    assert {"binary_tensor_data", "classification"} <= set(server["extensions"])
    metadata = client.get_model_metadata(MODEL)
    assert metadata["inputs"] == [{"name": "images", "datatype": "UINT8",
                                   "shape": [-1, 32, 32, 3]}]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32",
                                    "shape": [-1, len(predictor.classes)]}]
    assert client.get_model_metadata(MODEL, model_version="1") == metadata


@pytest.mark.hostile
def test_the_served_version_is_ready_and_no_other(client, http):
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready(MODEL, "2")
    answer = http.get(f"/v2/models/{MODEL}/versions/2/ready")
    assert answer.status_code == 404 and "no such model or version" in answer.json()["error"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_classifies_obfuscated_images_as_v1_does(client, http, obfuscated,
                                                              predictor, binary):
    images = obfuscated[:MAX_IMAGES]
    wanted = triton.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer(MODEL, [images_input(images, binary)], outputs=[wanted],
                          request_id="req-7")
    probs = result.as_numpy("probabilities")
    assert probs.dtype == np.float32 and probs.shape == (len(images), len(predictor.classes))
    assert result.get_response()["id"] == "req-7"
    np.testing.assert_allclose(probs, predictor(images), atol=1e-5)
    np.testing.assert_allclose(probs, v1_probabilities(http, images, len(predictor.classes)),
                               atol=1e-5)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_the_classification_extension_gives_the_top_k_labels(client, obfuscated, predictor,
                                                             binary):
    images = obfuscated[:4]
    wanted = triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)
    result = client.infer(MODEL, [images_input(images)], outputs=[wanted])
    top = result.as_numpy("probabilities")
    assert top.shape == (4, 3)
    expected = predictor(images)
    for row, p in zip(top, expected, strict=True):
        entries = [(v.decode() if isinstance(v, bytes) else v).split(":") for v in row]
        indices = [int(i) for _, i, _ in entries]
        assert indices == list(np.argsort(-p, kind="stable")[:3])
        assert [label for _, _, label in entries] == [predictor.classes[i] for i in indices]
        np.testing.assert_allclose([float(s) for s, _, _ in entries], p[indices], rtol=1e-6)


def test_no_outputs_named_returns_every_output_as_binary(client, obfuscated, predictor):
    result = client.infer(MODEL, [images_input(obfuscated[:2])])
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 2 * 10 * 4
    np.testing.assert_allclose(result.as_numpy("probabilities"), predictor(obfuscated[:2]),
                               atol=1e-5)


def test_the_versioned_path_answers_and_other_versions_are_404(client, obfuscated):
    result = client.infer(MODEL, [images_input(obfuscated[:1])], model_version="1")
    assert result.as_numpy("probabilities").shape == (1, 10)
    with pytest.raises(InferenceServerException, match="no such model or version"):
        client.infer(MODEL, [images_input(obfuscated[:1])], model_version="2")


def test_an_unknown_model_is_404_naming_the_path(client, obfuscated):
    with pytest.raises(InferenceServerException) as e:
        client.infer("resnet50", [images_input(obfuscated[:1])])
    assert e.value.status() == "404" and "/v2/models/resnet50" in e.value.message()
    assert not client.is_model_ready("resnet50")


def test_tritonclient_errors_carry_the_servers_message(client, obfuscated):
    too_many = np.concatenate([obfuscated] * 2)[:MAX_IMAGES + 1]
    with pytest.raises(InferenceServerException, match=f"at most {MAX_IMAGES} images"):
        client.infer(MODEL, [images_input(too_many)])
    floats = triton.InferInput("images", [1, 32, 32, 3], "FP32")
    floats.set_data_from_numpy(obfuscated[:1].astype(np.float32) / 255)
    with pytest.raises(InferenceServerException, match="UINT8"):
        client.infer(MODEL, [floats])


def test_a_gzip_request_is_refused_not_unpacked(client, obfuscated):
    with pytest.raises(InferenceServerException, match="uncompressed") as e:
        client.infer(MODEL, [images_input(obfuscated[:1])], request_compression_algorithm="gzip")
    assert e.value.status() == "415"


def test_the_token_guards_inference_but_not_health(guarded, obfuscated):
    url = guarded.removeprefix("http://")
    with triton.InferenceServerClient(url=url) as anonymous:
        assert anonymous.is_server_live() and anonymous.is_server_ready()
        with pytest.raises(InferenceServerException, match="bearer token") as e:
            anonymous.infer(MODEL, [images_input(obfuscated[:1])])
        assert e.value.status() == "401"
    with triton.InferenceServerClient(url=url) as c:
        result = c.infer(MODEL, [images_input(obfuscated[:1])],
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert result.as_numpy("probabilities").shape == (1, 10)


# --- by hand: what tritonclient would never send ----------------------------------------------
def post_infer(http: httpx.Client, request: dict, binary: bytes = b"",
               header_length: int | None = None) -> httpx.Response:
    head = json.dumps(request).encode()
    headers = {}
    if binary or header_length is not None:
        headers["Inference-Header-Content-Length"] = str(
            len(head) if header_length is None else header_length)
    return http.post(f"/v2/models/{MODEL}/infer", content=head + binary, headers=headers)


def image_tensor(shape: list, **fields) -> dict:
    return {"name": "images", "datatype": "UINT8", "shape": shape, **fields}


def test_nested_json_data_is_accepted_like_flat_data(http, obfuscated, predictor):
    image = obfuscated[:1]
    flat = post_infer(http, {"inputs": [image_tensor([1, 32, 32, 3],
                                                     data=image.ravel().tolist())]})
    nested = post_infer(http, {"inputs": [image_tensor([1, 32, 32, 3], data=image.tolist())]})
    assert flat.status_code == nested.status_code == 200
    assert flat.json()["outputs"] == nested.json()["outputs"]
    np.testing.assert_allclose(np.array(flat.json()["outputs"][0]["data"]).reshape(1, 10),
                               predictor(image), atol=1e-5)


BAD_REQUESTS = [
    ({"inputs": []}, 400, "exactly one tensor"),
    ({"inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 32, 32, 3]}]}, 400,
     "takes one input, 'images'"),
    ({"inputs": [image_tensor([1, 16, 16, 3], data=[0] * 768)]}, 422, "[N, 32, 32, 3]"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[0] * 100)]}, 400, "needs 3072 values"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[256] * 3072)]}, 422, "0 to 255"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[0.5] * 3072)]}, 422, "0 to 255"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[True] * 3072)]}, 422, "0 to 255"),
    ({"inputs": [image_tensor([0, 32, 32, 3], data=[])]}, 422, "[N, 32, 32, 3]"),
    ({"inputs": [image_tensor([True, 32, 32, 3], data=[0] * 3072)]}, 422, "[N, 32, 32, 3]"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[0] * 3072)],
      "outputs": [{"name": "logits"}]}, 400, "one output, 'probabilities'"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[0] * 3072)],
      "outputs": [{"name": "probabilities", "parameters": {"classification": 11}}]}, 422,
     "from 0 to 10"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[[[[[[[[[[0]]]]]]]]]])]}, 400, "too deep"),
    ({"inputs": [image_tensor([1, 32, 32, 3], parameters={"binary_data_size": 3072})]}, 400,
     "0 bytes follow"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[0] * 3072)], "id": 5}, 400,
     "'id' must be a string"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[0] * 3072)],
      "outputs": [{"name": "probabilities"}] * 2}, 400,
     "output 'probabilities' is asked for more than once"),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[0] * 3072)],
      "outputs": [{"name": "probabilities", "parameters": {"binary_data": "false"}}]}, 422,
     "binary_data of output 'probabilities' must be true or false, got \"false\""),
    ({"inputs": [image_tensor([1, 32, 32, 3], data=[0] * 3072)],
      "parameters": {"binary_data_output": 1}}, 422,
     "binary_data_output of the request must be true or false, got 1"),
    ({"inputs": [image_tensor([1, 32, 32, 3], parameters={"binary_data_size": "3072"})]}, 400,
     "binary_data_size of input 'images' must be a whole number of bytes, got \"3072\""),
    ({"inputs": [image_tensor([1, 32, 32, 3], parameters={"binary_data_size": 3072.0})]}, 400,
     "binary_data_size of input 'images' must be a whole number of bytes, got 3072.0"),
]


@pytest.mark.hostile
@pytest.mark.parametrize("request_body,status,message", BAD_REQUESTS)
def test_a_bad_infer_request_is_refused_with_its_reason(http, request_body, status, message):
    answer = post_infer(http, request_body)
    assert answer.status_code == status
    body = answer.json()
    assert message in body["error"] and isinstance(body["code"], str)


@pytest.mark.hostile
def test_a_lying_header_length_is_refused(http, obfuscated):
    request = {"inputs": [image_tensor([1, 32, 32, 3],
                                       parameters={"binary_data_size": 3072})]}
    raw = obfuscated[:1].tobytes()
    for length in (0, 10**9, -1):
        answer = post_infer(http, request, raw, header_length=length)
        assert answer.status_code == 400 and "Inference-Header-Content-Length" in \
            answer.json()["error"]
    short = post_infer(http, request, raw[:-1])
    assert short.status_code == 400 and "3071 bytes follow" in short.json()["error"]


@pytest.mark.hostile
def test_an_output_named_8000_times_is_refused_in_a_short_answer(http, obfuscated):
    # (issue 45: 31,000 times in a 1 MB request got a 399 MB answer; this server takes 256 KiB)
    request = {"inputs": [image_tensor([1, 32, 32, 3], data=obfuscated[0].ravel().tolist())],
               "outputs": [{"name": "probabilities"}] * 8000}
    answer = post_infer(http, request)
    assert answer.status_code == 400 and answer.json()["code"] == "repeated_output"
    assert len(answer.content) < 200


@pytest.mark.hostile
def test_a_wrong_or_missing_header_length_is_named_as_such(http, obfuscated):
    request = {"inputs": [image_tensor([1, 32, 32, 3],
                                       parameters={"binary_data_size": 3072})]}
    raw = obfuscated[:1].tobytes()
    head = json.dumps(request).encode()
    missing = http.post(f"/v2/models/{MODEL}/infer", content=head + raw)
    assert missing.status_code == 400
    assert "binary data after the JSON needs an Inference-Header-Content-Length" in \
        missing.json()["error"]
    short = post_infer(http, request, raw, header_length=len(head) - 3)
    assert short.status_code == 400
    assert (f"the first {len(head) - 3} bytes (Inference-Header-Content-Length) are not a JSON "
            "header") in short.json()["error"]


@pytest.mark.hostile
@pytest.mark.parametrize("path", [f"/v2/models/{MODEL}/infer/",
                                  f"/v2/models/{MODEL}/versions/1/infer/"])
def test_a_trailing_slash_is_a_json_404_not_an_empty_redirect(http, obfuscated, path):
    answer = http.post(path, content=json.dumps(
        {"inputs": [image_tensor([1, 32, 32, 3], data=obfuscated[0].ravel().tolist())]}))
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"


@pytest.mark.hostile
def test_large_requests_are_parsed_and_answered_off_the_event_loop(http, obfuscated,
                                                                   monkeypatch):
    import asyncio

    from veil.serve import v2

    calls = []

    def watched(work):
        def run(*args):
            try:
                asyncio.get_running_loop()
                calls.append((work.__name__, "event loop"))
            except RuntimeError:
                calls.append((work.__name__, "worker thread"))
            return work(*args)
        return run

    monkeypatch.setattr(v2, "parse_infer", watched(v2.parse_infer))
    monkeypatch.setattr(v2, "infer_answer", watched(v2.infer_answer))
    small = {"inputs": [image_tensor([1, 32, 32, 3], data=obfuscated[0].ravel().tolist())]}
    assert post_infer(http, small).status_code == 200  # 8 KB: quicker on the loop
    large = {"inputs": [image_tensor([MAX_IMAGES, 32, 32, 3],
                                     data=obfuscated[:MAX_IMAGES].ravel().tolist())]}
    assert post_infer(http, large).status_code == 200  # 70 KB of JSON
    monkeypatch.setattr(v2, "OFF_LOOP_BYTES", 0)
    assert post_infer(http, small).status_code == 200
    assert calls == [("parse_infer", "event loop"), ("infer_answer", "event loop"),
                     ("parse_infer", "worker thread"), ("infer_answer", "event loop"),
                     ("parse_infer", "worker thread"), ("infer_answer", "worker thread")]


@pytest.mark.hostile
@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b"[" * 100_000])
def test_a_body_that_is_not_a_json_object_is_400(http, body):
    answer = http.post(f"/v2/models/{MODEL}/infer", content=body)
    assert answer.status_code == 400 and answer.json()["code"] in ("invalid_json",
                                                                   "invalid_request")


@pytest.mark.hostile
def test_a_body_over_the_limit_is_413_before_it_is_parsed(http):
    answer = http.post(f"/v2/models/{MODEL}/infer", content=b"{" + b" " * 300_000 + b"}")
    assert answer.status_code == 413 and answer.json()["code"] == "body_too_large"


def test_v2_requests_are_counted_under_their_route(http, obfuscated):
    post_infer(http, {"inputs": [image_tensor([1, 32, 32, 3], data=obfuscated[0].tolist())]})
    text = http.get("/metrics").text
    assert f'route="/v2/models/{MODEL}/infer",status="200"' in text


# --- veil's edge over v2: to veil serve, and to a Triton-style model taking FP32 NCHW --------
def test_the_edge_client_over_v2_answers_as_over_v1(server, artifacts, tmp_path):
    paths = []
    for i, image in enumerate(sample_images(6)):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png_bytes(image))
    with VeilClient(server, artifacts.onnx, top_k=3, batch_size=4) as v1, \
            VeilClient(server, artifacts.onnx, top_k=3, batch_size=4, protocol="v2",
                       model=MODEL) as v2:
        over_v1, over_v2 = v1.classify(paths), v2.classify(paths)
    assert [(p.source, p.label, p.class_index) for p in over_v2] == \
        [(p.source, p.label, p.class_index) for p in over_v1]
    for a, b in zip(over_v1, over_v2, strict=True):
        assert [label for label, _ in a.top_k] == [label for label, _ in b.top_k]
        np.testing.assert_allclose([p for _, p in a.top_k], [p for _, p in b.top_k], atol=1e-6)
        assert b.sent_bytes == 32 * 32 * 3  # the 8-bit tensor itself


def test_veil_classify_protocol_v2(server, artifacts, tmp_path, capsys):
    image = tmp_path / "cat.png"
    image.write_bytes(png_bytes(sample_images(1)[0]))
    assert main(["classify", str(image), "--server", server, "--obfuscator",
                 str(artifacts.onnx), "--protocol", "v2", "--model", MODEL]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{image}: ")
    assert "sent 1 obfuscated image(s) as 8-bit tensors, 3072 bytes" in err
    assert main(["classify", str(image), "--server", server, "--obfuscator",
                 str(artifacts.onnx), "--protocol", "v2", "--model", "resnet50"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "answered 404 (model_not_found)" in err


class TritonLike:
    """A v2 server written from the protocol alone (standard library): a model `m` taking
    FP32 [N, 3, 32, 32] in [0, 1], as a PyTorch model exported to Triton would, answering the
    classification extension from `predictor`. `received` keeps each tensor it was sent."""

    def __init__(self, predictor, answer=None, max_batch: int | None = None) -> None:
        self.received: list[np.ndarray] = []
        self.refused = 0
        owner = self

        def infer(n, handler) -> None:
            body = handler.last_body
            length = int(handler.headers["Inference-Header-Content-Length"])
            head = json.loads(body[:length])
            tensor = np.frombuffer(body[length:], "<f4").reshape(head["inputs"][0]["shape"])
            if max_batch is not None and len(tensor) > max_batch:  # a limit it does not publish
                owner.refused += 1
                send_json(handler, {"error": f"at most {max_batch} images"}, 413)
                return
            owner.received.append(tensor)
            images = np.round(tensor * 255).astype(np.uint8).transpose(0, 2, 3, 1)
            k = head["outputs"][0]["parameters"]["classification"]
            probs = predictor(images)
            data = [f"{p[c]:.9g}:{c}:{predictor.classes[c]}"
                    for p in probs for c in np.argsort(-p, kind="stable")[:k]]
            reply = {"model_name": "m", "outputs": [{"name": "OUTPUT__0", "datatype": "BYTES",
                                                     "shape": [len(images), k], "data": data}]}
            send_json(handler, answer(reply) if answer else reply)

        metadata = {"name": "m", "versions": ["1"], "platform": "pytorch_libtorch",
                    "inputs": [{"name": "INPUT__0", "datatype": "FP32",
                                "shape": [-1, 3, 32, 32]}],
                    "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 10]}]}
        self.server = HostileServer(infer, health=metadata, keep_body=True)

    def __enter__(self) -> TritonLike:
        self.server.__enter__()
        self.url = self.server.url
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)


def test_the_edge_client_feeds_a_float_nchw_model_exactly_its_8bit_image(predictor, artifacts):
    images = sample_images(5)
    with TritonLike(predictor) as triton_like, VeilClient(
            triton_like.url, artifacts.onnx, top_k=2, protocol="v2", model="m") as client:
        got = client.classify(list(images))
        sent = client.obfuscated(list(images))
    tensor = np.concatenate(triton_like.received)
    assert tensor.dtype == np.float32 and tensor.shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(tensor, sent.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    expected = predictor(sent)
    assert [p.class_index for p in got] == list(expected.argmax(1))
    assert all(p.label == predictor.classes[p.class_index] for p in got)


@pytest.mark.hostile
def test_a_413_splits_the_batch_until_the_server_takes_it(predictor, artifacts):
    images = sample_images(5)
    with TritonLike(predictor, max_batch=2) as triton_like, VeilClient(
            triton_like.url, artifacts.onnx, top_k=2, batch_size=8, protocol="v2",
            model="m") as client:
        got = client.classify(list(images))
        sent = client.obfuscated(list(images))
    assert [len(t) for t in triton_like.received] == [2, 1, 2]
    assert triton_like.refused == 2 and client.batch_size == 1
    assert [p.class_index for p in got] == list(predictor(sent).argmax(1))


@pytest.mark.hostile
@pytest.mark.parametrize("bad, message", [
    (lambda r: {**r, "outputs": []}, "the answer has no output 'OUTPUT__0'"),
    (lambda r: {"outputs": [{**r["outputs"][0], "shape": [1, 10]}]},
     "not the [1, 2] classification asked for"),
    (lambda r: {"outputs": [{**r["outputs"][0], "data": ["0.9", "0.1:1:x"]}]},
     "classification entry '0.9' is not 'score:index:label'"),
    (lambda r: {"outputs": [{**r["outputs"][0], "data": ["nan:3:cat", "0.1:1:x"]}]},
     "confidence nan is not a probability"),
    (lambda r: {"outputs": [{**r["outputs"][0], "data": [7, "0.1:1:x"]}]},
     "classification entry 7 is not"),
    (lambda r: {"outputs": [{**r["outputs"][0], "data": ["0.9:12:x", "0.1:1:automobile"]}]},
     "classification entry '0.9:12:x' names class 12; the model has classes 0 to 9"),
    (lambda r: {"outputs": [{**r["outputs"][0], "data": ["0.9:-7:x", "0.1:1:automobile"]}]},
     "names class -7"),
    (lambda r: {"outputs": [{**r["outputs"][0], "data": ["0.01:1:automobile", "0.9:3:cat"]}]},
     "the classification of image 0 is not sorted by score"),
    (lambda r: {"outputs": [{**r["outputs"][0], "data": ["0.9:3:", "0.1:1:automobile"]}]},
     "classification entry '0.9:3:' has an empty label"),
    (lambda r: {"outputs": [{**r["outputs"][0], "data": ["0.6:3:cat", "0.3:3:dog"]}]},
     "class 3 is labelled both 'cat' and 'dog'"),
])
def test_a_bad_v2_answer_is_one_error_naming_the_server(predictor, artifacts, bad, message):
    with TritonLike(predictor, bad) as triton_like, VeilClient(
            triton_like.url, artifacts.onnx, top_k=2, protocol="v2", model="m") as client, \
            pytest.raises(ServerError) as e:
        client.classify(list(sample_images(1)))
    assert message in str(e.value) and triton_like.url in str(e.value)


@pytest.mark.hostile
@pytest.mark.parametrize("metadata, message", [
    ({"inputs": [], "outputs": [{"name": "o"}]}, "must take exactly one input tensor"),
    ({"inputs": [{"name": "x", "datatype": "INT64", "shape": [-1, 32, 32, 3]}],
      "outputs": [{"name": "o"}]}, "takes INT64 input"),
    ({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [-1, 32, 32]}],
      "outputs": [{"name": "o"}]}, "is not [N, H, W, 3] or [N, 3, H, W]"),
    ({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [-1, 64, 64, 3]}],
      "outputs": [{"name": "o"}]}, "takes 64x64 images, the obfuscator makes 32x32"),
    ({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}],
      "outputs": []}, "lists no output tensors"),
])
def test_model_metadata_that_does_not_fit_is_refused_before_any_image_is_sent(
        artifacts, metadata, message):
    with HostileServer(health=metadata) as server, VeilClient(
            server.url, artifacts.onnx, protocol="v2", model="m") as client:
        with pytest.raises(ServerError, match=message.replace("[", r"\[")):
            client.classify(list(sample_images(1)))
        assert server.requests == 0


def test_v2_needs_a_model_name():
    with pytest.raises(ValueError, match="--model"):
        VeilClient("http://127.0.0.1:1", lambda x: x, protocol="v2")


# --- issue 50's low findings, on the server ---------------------------------------------------
@pytest.mark.hostile
def test_a_second_content_encoding_cannot_hide_behind_identity(http, obfuscated):
    head = json.dumps({"inputs": [image_tensor([1, 32, 32, 3],
                                               data=obfuscated[:1].ravel().tolist())]}).encode()
    reply = http.post(f"/v2/models/{MODEL}/infer", content=head,
                      headers=[("Content-Encoding", "identity"), ("Content-Encoding", "gzip")])
    assert reply.status_code == 415 and reply.json()["code"] == "compressed_body"


@pytest.mark.hostile
def test_json_data_beside_binary_data_is_refused_not_ignored(http, obfuscated):
    tensor = image_tensor([1, 32, 32, 3], data=[0] * 3072,
                          parameters={"binary_data_size": 3072})
    reply = post_infer(http, {"inputs": [tensor]}, obfuscated[:1].tobytes())
    assert reply.status_code == 400 and "both JSON data and binary_data_size" in \
        reply.json()["error"]


@pytest.mark.hostile
def test_a_5000_digit_integer_is_named_for_what_it_is(http):
    head = ('{"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, 32, 32, 3], '
            '"data": [' + "9" * 5000 + "]}]}").encode()
    reply = http.post(f"/v2/models/{MODEL}/infer", content=head)
    assert reply.status_code == 400 and "integer of more digits" in reply.json()["error"]


@pytest.mark.hostile
def test_a_v2_path_with_a_doubled_slash_is_answered_in_the_v2_shape(server):
    import socket

    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET //v2/models/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404") and set(json.loads(body)) == {"error", "code"}


def test_head_healthz_answers_like_get(http):
    assert http.head("/healthz").status_code == 200
