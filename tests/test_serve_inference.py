"""The classifier behind the server (serve/inference.py, worker.py, errors.py): faults of the
model, and the inference process that is replaced when it dies or hangs."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from veil.cli import main
from veil.edge.images import encode_png
from veil.serve.app import create_app
from veil.serve.inference import Predictor
from veil.serve.server import BackgroundServer
from veil.serve.worker import InferenceProcess

try:  # whether or not tests/ is a package
    from tests.serve_helpers import classify, metric
except ModuleNotFoundError:
    from serve_helpers import classify, metric


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_inference_process_names_a_checkpoint_it_cannot_load(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=r"could not load .*bad\.pt: CheckpointError"):
        InferenceProcess(bad)


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_the_inference_timeout_must_be_positive(artifacts):
    with pytest.raises(ValueError, match="inference timeout must be positive"):
        InferenceProcess(artifacts.classifier, batch_timeout_s=0)
