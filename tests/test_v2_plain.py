"""The edge against a v2 server without the classification extension (KServe's Python server,
MLServer): the answer is the output tensor itself, [N, classes] probabilities or logits, and the
top k are computed on the device, labelled from the obfuscator's manifest. Every answer is
checked as strictly as the extension's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hostile_server import CLASSES, HostileServer, send_json
from offload_helpers import sample_images
from veil.edge.client import ServerError, VeilClient
from veil.edge.v2 import BadModel, ModelInput, predictions

SPEC = ModelInput("m", "input__0", "FP32", True, (32, 32), "output__0", None, 10)
METADATA = {"name": "m", "inputs": [{"name": "input__0", "datatype": "FP32",
                                     "shape": [-1, 3, 32, 32]}],
            "outputs": [{"name": "output__0", "datatype": "FP32", "shape": [-1, 10]}]}


def tensor_answer(scores: np.ndarray, name: str = "output__0", datatype: str = "FP32") -> dict:
    return {"outputs": [{"name": name, "datatype": datatype, "shape": list(scores.shape),
                         "data": scores.ravel().tolist()}]}


def test_logits_are_turned_into_the_top_k_on_the_device():
    logits = np.array([[0.0, 2.0, 1.0] + [-5.0] * 7, [3.0] + [0.0] * 9])
    out = predictions(tensor_answer(logits), SPEC, 2, 3, class_names=CLASSES)
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert [t["class_index"] for t in out[0]["top_k"]] == [1, 2, 0]
    assert out[0]["label"] == "automobile" and out[0]["confidence"] == pytest.approx(p[1])
    assert out[1]["label"] == "airplane" and len(out[1]["top_k"]) == 3


def test_probabilities_are_kept_as_they_are_and_labelled_by_index_without_names():
    probs = np.full((1, 10), 0.05)
    probs[0, 7] = 0.55
    out = predictions(tensor_answer(probs, "probabilities"),
                      ModelInput("m", "x", "UINT8", False, (32, 32), "probabilities", None, 10),
                      1, 2)
    assert out[0]["label"] == "7" and out[0]["confidence"] == pytest.approx(0.55)
    assert out[0]["top_k"][1]["probability"] == pytest.approx(0.05)


@pytest.mark.parametrize("answer, message", [
    (tensor_answer(np.zeros((2, 9))), "shape \\[2, 9\\], not the \\[2, 10\\]"),
    (tensor_answer(np.zeros((3, 10))), "shape \\[3, 10\\]"),
    ({"outputs": [{"name": "output__0", "datatype": "FP32", "shape": [2, 10],
                   "data": [0.1] * 19 + ["x"]}]}, "not numbers"),
    ({"outputs": [{"name": "output__0", "datatype": "FP32", "shape": [2, 10],
                   "data": [0.1] * 19 + [True]}]}, "not numbers"),
    (tensor_answer(np.full((2, 10), np.nan)), "NaN or infinite"),
    (tensor_answer(np.full((2, 10), 0.3), "probabilities"), "not distributions"),
], ids=["classes", "images", "text", "bool", "nan", "not a distribution"])
def test_a_bad_tensor_answer_is_refused_with_what_is_wrong(answer, message):
    spec = SPEC if "probabilities" not in json.dumps(answer) else ModelInput(
        "m", "x", "UINT8", False, (32, 32), "probabilities", None, 10)
    with pytest.raises(BadModel, match=message):
        predictions(answer, spec, 2, 1, class_names=CLASSES)


def test_class_names_of_another_classifier_are_refused():
    with pytest.raises(BadModel, match="10 classes, the obfuscator's manifest names 3"):
        predictions(tensor_answer(np.zeros((1, 10))), SPEC, 1, 1, class_names=["a", "b", "c"])


def _plain_v2(n_classes: int = 10):
    """A v2 server that knows nothing of the classification extension: it answers the output
    tensor (logits favouring class 3) for as many images as the request's input shape says."""
    def answer(_n, handler):
        length = int(handler.headers["inference-header-content-length"])
        head = json.loads(handler.last_body[:length])
        n = head["inputs"][0]["shape"][0]
        assert head["inputs"][0]["datatype"] == "FP32"  # as the metadata asks
        logits = np.zeros((n, n_classes))
        logits[:, 3] = 4.0
        send_json(handler, tensor_answer(logits))
    return answer


def test_veil_classify_over_v2_works_with_a_server_without_the_extension():
    with HostileServer(_plain_v2(), health=METADATA, keep_body=True) as server, \
            VeilClient(server.url, lambda images: images, protocol="v2", model="m", top_k=2,
                       class_names=CLASSES) as client:
        got = client.classify(list(sample_images(3)))
    assert [p.label for p in got] == ["cat"] * 3
    assert got[0].confidence == pytest.approx(np.exp(4) / (np.exp(4) + 9))
    assert len(got[0].top_k) == 2


def test_a_tensor_answer_of_the_wrong_width_is_one_error_naming_the_server():
    metadata = {**METADATA, "outputs": [{"name": "output__0", "datatype": "FP32",
                                         "shape": [-1, 10]}]}
    with HostileServer(_plain_v2(n_classes=12), health=metadata, keep_body=True) as server, \
            VeilClient(server.url, lambda images: images, protocol="v2", model="m",
                       class_names=CLASSES) as client, \
            pytest.raises(ServerError, match="not the \\[2, 10\\] of the model's metadata"):
        client.classify(list(sample_images(2)))


@pytest.mark.hostile
def test_an_integer_beyond_any_float_is_a_bad_answer_not_a_traceback():
    answer = {"outputs": [{"name": "output__0", "datatype": "FP64", "shape": [1, 10],
                           "data": [10**400] + [0] * 9}]}
    with pytest.raises(BadModel, match="holds a number too large for a score"):
        predictions(answer, SPEC, 1, 1, class_names=CLASSES)


@pytest.mark.hostile
def test_a_zero_width_answer_names_the_server_and_keeps_the_answers_before_it():
    from veil.edge.client import NotClassified

    metadata = {**METADATA, "outputs": [{"name": "output__0", "datatype": "FP32",
                                         "shape": [-1, -1]}]}
    calls = {"n": 0}
    good = _plain_v2()

    def answer(n, handler):
        calls["n"] += 1
        if calls["n"] == 1:
            return good(n, handler)
        length = int(handler.headers["inference-header-content-length"])
        shape = json.loads(handler.last_body[:length])["inputs"][0]["shape"]
        send_json(handler, tensor_answer(np.zeros((shape[0], 0))))
    with HostileServer(answer, health=metadata, keep_body=True) as server, \
            VeilClient(server.url, lambda images: images, protocol="v2", model="m",
                       class_names=CLASSES, batch_size=2) as client, \
            pytest.raises(NotClassified) as caught:
        client.classify(list(sample_images(4)))
    assert server.url in str(caught.value) and "shape [2, 0]" in str(caught.value)
    assert [p.label for p in caught.value.predictions] == ["cat", "cat"]


# --- issue 50's low findings, on the edge: the classification extension's answers -------------
EXT = ModelInput("m", "images", "UINT8", False, (32, 32), "probabilities", None, 10)


def classification(entries: list, shape: list | None = None, copies: int = 1) -> dict:
    output = {"name": "probabilities", "datatype": "BYTES", "shape": shape or [1, len(entries)],
              "data": entries}
    return {"outputs": [output] * copies}


@pytest.mark.hostile
@pytest.mark.parametrize("entry", ["0_0.5:1:cat", "\u0660.5:1:cat", "0.5:\u0661:cat",
                                   "0.5:1_0:cat", " 0.5:1:cat", "infinity:1:cat"])
def test_scores_and_indices_are_plain_ascii_numbers(entry):
    with pytest.raises(BadModel, match="is not 'score:index:label'"):
        predictions(classification([entry]), EXT, 1, 1)


@pytest.mark.hostile
def test_an_output_given_twice_is_refused_not_the_first_taken():
    with pytest.raises(BadModel, match="holds output 'probabilities' 2 times"):
        predictions(classification(["0.9:1:cat"], copies=2), EXT, 1, 1)


@pytest.mark.hostile
def test_a_megabyte_label_is_refused_and_not_printed_whole():
    with pytest.raises(BadModel, match="longer than 200 characters") as caught:
        predictions(classification(["0.9:1:" + "x" * 2**20]), EXT, 1, 1)
    assert len(str(caught.value)) < 300


@pytest.mark.hostile
def test_a_right_shape_with_the_wrong_number_of_entries_says_so():
    with pytest.raises(BadModel, match=r"of shape \[2, 1\] holds 1 entries, not 2"):
        predictions(classification(["0.9:1:cat"], shape=[2, 1]), EXT, 2, 1)
