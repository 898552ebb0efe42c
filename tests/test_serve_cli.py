"""`veil serve` as a command (serve/cli.py, server.py): its options, the real process end to end,
loading the classifier."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from veil.cli import main
from veil.serve.inference import Predictor
from veil.serve.worker import InferenceProcess

try:  # whether or not tests/ is a package
    from tests.offload_helpers import png_bytes, sample_images
except ModuleNotFoundError:
    from offload_helpers import png_bytes, sample_images


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_load_predictor_modes(artifacts, tmp_path):
    from veil.serve.cli import load_predictor

    in_thread = load_predictor(artifacts.classifier, 1, "thread")
    assert isinstance(in_thread, Predictor)
    with load_predictor(artifacts.classifier, 1, "process") as in_child:
        assert isinstance(in_child, InferenceProcess) and in_child.classes == in_thread.classes
    with pytest.raises(FileNotFoundError, match="no such classifier checkpoint"):
        load_predictor(tmp_path / "missing.pt", 1, "process")


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
