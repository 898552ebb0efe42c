"""The query client trusts no server: each broken or hostile answer of a real server on loopback
(tests/hostile_server.py) ends in a one-line error naming the server and what was wrong, or,
where asked, in a skipped and counted image; memory and time stay bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from hostile_server import (
    CLASSES,
    HostileServer,
    compressed,
    endless_body,
    good_answer,
    prediction,
    rate_limited,
    send_json,
    trickle,
    trickle_headers,
)
from offload_helpers import png_bytes, sample_images
from veil.cli import main
from veil.edge.client import ServerError, VeilClient
from veil.pipeline.blackbox import JOURNAL, QueryLog, answer_target, parse_answers, query

pytestmark = pytest.mark.hostile


@pytest.fixture(scope="module")
def artifacts_onnx(artifacts):
    return artifacts.onnx


def _as_sent(images):
    return images


def _client(server, **kwargs):
    return VeilClient(server.url, _as_sent, top_k=10, **kwargs)


def _answers_with(bad: dict) -> callable:
    def answer(n, handler):
        predictions = [prediction(i) for i in range(n)]
        predictions[1] = {**predictions[1], **bad}
        return {"predictions": predictions}
    return answer


@pytest.mark.parametrize("bad, message", [
    ({"top_k": [{"label": "cat", "probability": float("nan")}]},
     "probability nan of 'cat' is not a number in [0, 1]"),
    ({"top_k": [{"label": "cat", "probability": -3.0}]},
     "probability -3.0 of 'cat' is not a number in [0, 1]"),
    ({"top_k": [{"label": "zebra", "probability": 0.5}]},
     "label 'zebra' is not one of the server's classes"),
    ({"label": "zebra"}, "label 'zebra' is not one of the server's classes"),
    ({"top_k": [{"label": "cat", "probability": 0.5}, {"label": "cat", "probability": 0.4}]},
     "a label appears twice in top_k"),
    ({"top_k": [{"label": "cat", "probability": 0.9}, {"label": "dog", "probability": 0.9}]},
     "top_k probabilities add up to more than 1"),
    ({"confidence": float("inf")}, "confidence inf is not a probability"),
    ({"class_index": 7}, "class_index 7 does not name 'cat'"),
])
def test_an_invalid_answer_is_an_error_naming_the_server_and_the_image(bad, message):
    with HostileServer(_answers_with(bad)) as server, _client(server) as client, \
            pytest.raises(ServerError) as err:
        client.classify(list(sample_images(3)))
    text = str(err.value)
    assert text.startswith(f"{server.url} answered 200 (bad_response)")
    assert "prediction for image-1 (position 1)" in text and message in text
    assert "\n" not in text


def test_skip_drops_and_counts_the_invalid_answers_only():
    bad = {"top_k": [{"label": "cat", "probability": float("nan")}]}
    with HostileServer(_answers_with(bad)) as server, \
            _client(server, bad_answers="skip") as client:
        predictions = client.classify(list(sample_images(3)))
    assert predictions[1] is None and predictions[0].label == predictions[2].label == "cat"
    assert client.skipped == [("image-1", "probability nan of 'cat' is not a number in [0, 1]")]


@pytest.mark.parametrize("health, message", [
    ({"classes": ["cat", "dog", "cat"], "max_images": 16}, "class name 'cat' is given twice"),
    ({"classes": "cat,dog", "max_images": 16}, "not a list of names"),
    ({"classes": CLASSES, "max_images": 0}, "max_images 0, not a whole number of at least 1"),
])
def test_a_class_list_or_limit_that_makes_no_sense_is_refused(health, message):
    with HostileServer(health=health) as server, _client(server) as client, \
            pytest.raises(ServerError, match=message):
        client.classify(list(sample_images(2)))
    assert server.images == 0, "nothing is sent to a server that describes itself wrongly"


def test_an_endless_body_stops_at_the_size_cap_with_bounded_memory():
    tracemalloc.start()
    try:
        with HostileServer(endless_body) as server, \
                _client(server, max_response_bytes=2**20) as client:
            started = time.monotonic()
            with pytest.raises(ServerError, match="larger than the client's cap of 1,048,576 "
                                                  "bytes"):
                client.classify(list(sample_images(2)))
            elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak Python memory {peak:,} bytes for a 1 MiB cap"
    assert elapsed < 30


BOMB = compressed(layers=2, size=64 * 2**20)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["healthz", "v1", "v2 metadata", "blackbox"])
def test_a_compressed_answer_is_refused_before_it_is_inflated(where, tmp_path):
    health = BOMB if where in ("healthz", "v2 metadata") else {"classes": CLASSES,
                                                               "max_images": 16}
    protocol = {"protocol": "v2", "model": "m"} if where == "v2 metadata" else {}
    tracemalloc.start()
    try:
        with HostileServer(BOMB, health=health) as server, \
                _client(server, **protocol) as client, pytest.raises(ServerError) as err:
            if where == "blackbox":  # the query step's own use of the client
                client.check_server()
                query(client, sample_images(2), CLASSES, "probs",
                      QueryLog.open(tmp_path / JOURNAL))
            else:
                client.classify(list(sample_images(2)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "the answer is compressed (Content-Encoding 'gzip, gzip'), which this client " \
           "refuses unread" in str(err.value)
    assert peak < 16 * 2**20, f"peak Python memory {peak:,} bytes for a 64 MiB bomb"


@pytest.mark.slow
def test_a_label_or_error_with_control_characters_is_printed_escaped(artifacts_onnx, capsys,
                                                                     tmp_path):
    forged = "cat\nim9.png: dog 99.0%\x1b]0;owned\x07\x1b[2J"
    classes = [forged if c == "cat" else c for c in CLASSES]

    def answer(n, handler):
        index = classes.index(forged)
        top = [{"label": forged, "class_index": index, "probability": 0.9}]
        return {"predictions": [{"index": i, "label": forged, "class_index": index,
                                 "confidence": 0.9, "top_k": top} for i in range(n)]}

    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(sample_images(1)[0]))
    with HostileServer(answer, health={"classes": classes, "max_images": 16}) as server:
        assert main(["classify", str(image), "--server", server.url, "--obfuscator",
                     str(artifacts_onnx)]) == 0
    out = capsys.readouterr().out
    assert out == f"{image}: cat\\nim9.png: dog 99.0%\\x1b]0;owned\\x07\\x1b[2J 90.0%\n"

    def error(n, handler):
        send_json(handler, {"error": "bad\x1b[31m", "detail": "boom\nim9.png: dog 99.0%\x1b[0m"},
                  500)
    with HostileServer(error) as server:
        assert main(["classify", str(image), "--server", server.url, "--obfuscator",
                     str(artifacts_onnx)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err
    assert "answered 500 (bad\\x1b[31m): boom\\nim9.png: dog 99.0%\\x1b[0m" in err


@pytest.mark.parametrize("top_k", ["0", "-1"])
def test_veil_classify_refuses_a_top_k_below_one_before_sending(artifacts_onnx, capsys,
                                                                tmp_path, top_k):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(sample_images(1)[0]))
    with HostileServer() as server, pytest.raises(SystemExit):
        main(["classify", str(image), "--server", server.url, "--obfuscator",
              str(artifacts_onnx), "--protocol", "v2", "--model", "m", "--top-k", top_k])
    assert f"--top-k: must be at least 1, got {top_k}" in capsys.readouterr().err
    assert server.requests == 0
    with pytest.raises(ValueError, match="top_k must be a whole number of at least 1"):
        VeilClient(server.url, _as_sent, top_k=int(top_k))


@pytest.mark.slow
@pytest.mark.parametrize("answer", [trickle(0.1), trickle_headers(0.1)],
                         ids=["body", "headers"])
def test_a_trickling_server_is_given_up_on_after_the_request_timeout(answer):
    with HostileServer(answer) as server, \
            _client(server, timeout=30.0, request_timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(ServerError, match="no complete answer within 1 s"):
            client.classify(list(sample_images(2)))
        elapsed = time.monotonic() - started
    # every read came within the 30 s read timeout: only the whole-request limit ended it
    assert 0.9 < elapsed < 20


def test_429_is_honoured_with_its_retry_after_and_counted():
    with HostileServer(rate_limited(2, retry_after="0.2")) as server, _client(server) as client:
        started = time.monotonic()
        predictions = client.classify(list(sample_images(3)))
        elapsed = time.monotonic() - started
    assert [p.label for p in predictions] == ["cat"] * 3
    assert client.rate_limited == 2 and server.requests == 3
    assert elapsed >= 0.4, "the client waited the server's Retry-After twice"


def test_endless_rate_limiting_ends_in_a_clear_error():
    with HostileServer(rate_limited(10**6, retry_after="0")) as server, \
            _client(server) as client, pytest.raises(ServerError, match="still rate-limited"):
        client.classify(list(sample_images(1)))


@pytest.mark.hostile
@pytest.mark.parametrize("retry_after", ["60", "1000000"])
def test_a_429_that_asks_for_a_wait_past_request_timeout_ends_at_once(retry_after):
    with HostileServer(rate_limited(10**6, retry_after=retry_after)) as server, \
            _client(server, request_timeout=2.0) as client:
        started = time.monotonic()
        with pytest.raises(ServerError, match="would outlast request_timeout"):
            client.classify(list(sample_images(1)))
    assert time.monotonic() - started < 30  # not the 60 s the server asked for


@pytest.mark.slow
@pytest.mark.hostile
def test_429_waits_all_count_against_one_request_timeout():
    with HostileServer(rate_limited(10**6, retry_after="0.4")) as server, \
            _client(server, request_timeout=1.5) as client:
        started = time.monotonic()
        with pytest.raises(ServerError, match="would outlast request_timeout"):
            client.classify(list(sample_images(1)))
    # before, each of 8 waits came on top of its own request timeout (3.2 s and more)
    assert client.rate_limited <= 4 and time.monotonic() - started < 30


def test_veil_classify_reports_a_hostile_server_in_one_line(artifacts_onnx, capsys, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(sample_images(1)[0]))
    with HostileServer(trickle(0.1)) as server:
        code = main(["classify", str(image), "--server", server.url, "--obfuscator",
                     str(artifacts_onnx), "--request-timeout", "0.5"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert f"{server.url} gave no answer (timeout): no complete answer within 0.5 s" in err


def test_veil_classify_prints_what_was_answered_before_a_bad_answer(artifacts_onnx, capsys,
                                                                    tmp_path):
    def good_then_nan(n, handler):
        bad = server.requests > 1
        return {"predictions": [prediction(i, probability=float("nan") if bad else 0.9)
                                for i in range(n)]}

    images = []
    for name, image in zip("abc", sample_images(3), strict=True):
        images.append(tmp_path / f"{name}.png")
        images[-1].write_bytes(png_bytes(image))
    with HostileServer(good_then_nan) as server:
        code = main(["classify", *map(str, images), "--server", server.url, "--obfuscator",
                     str(artifacts_onnx), "--batch-size", "2"])
    out, err = capsys.readouterr()
    assert code == 2
    assert [line.split(":")[0] for line in out.splitlines()] == [str(p) for p in images[:2]]
    assert err.strip().count("\n") == 0
    assert f"not classified: 1 image(s) ({images[2]}), 2 answered before" in err


def test_veil_blackbox_refuses_a_token_on_the_command_line(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["blackbox", "--classifier-url", "http://127.0.0.1:9", "--data", "sample",
              "--out", str(tmp_path), "--token", "secret"])
    err = capsys.readouterr().err
    assert "visible to every user of this machine (ps)" in err and "secret" not in err


# --- what a surrogate learns from: exactly what the server answered ---------------------------
def test_answer_kinds_are_parsed_and_bad_ones_named():
    assert parse_answers("probs") == ("probs", None)
    assert parse_answers("topk:3") == ("topk", 3)
    assert parse_answers("label") == ("label", None)
    for bad in ("topk:0", "topk", "all", "topk:x"):
        with pytest.raises(ValueError, match=f"--answers '{bad}': expected probs, topk:K or "
                                             "label"):
            parse_answers(bad)


def test_label_and_topk_targets_hold_exactly_what_was_answered():
    from veil.edge.client import Prediction

    p = Prediction("x", "dog", 5, 0.6, [("dog", 0.6), ("cat", 0.3)])
    np.testing.assert_array_equal(answer_target(p, CLASSES, "label"), np.eye(10)[5])
    target = answer_target(p, CLASSES, "topk")
    assert target[5] == pytest.approx(0.6) and target[3] == pytest.approx(0.3)
    np.testing.assert_allclose(np.delete(target, [3, 5]), 0.1 / 8, rtol=1e-6)


def test_a_label_only_query_run_keeps_one_hot_targets_of_the_answered_labels(tmp_path):
    def answer(n, handler):
        return {"predictions": [prediction(i, label=CLASSES[i % 10], probability=1.0)
                                for i in range(n)]}
    images = sample_images(20)
    with HostileServer(answer) as server, _client(server) as client:
        client.check_server()
        log = QueryLog.open(tmp_path / JOURNAL)
        query(client, images, CLASSES, "label", log)
    targets = np.array([log.targets[i] for i in range(20)])
    # 16 images a request: the second request restarts the server's index at 0
    expected = [i % 10 for i in range(16)] + [i % 10 for i in range(4)]
    np.testing.assert_array_equal(targets, np.eye(10)[expected])
    assert log.sent == 20 and log.requests == 2


@pytest.mark.slow
def test_rate_limit_waits_are_journalled_and_survive_a_resume(tmp_path):
    images = sample_images(20)
    with HostileServer(rate_limited(2, retry_after="0")) as server, _client(server) as client:
        client.check_server()
        query(client, images[:16], CLASSES, "probs", QueryLog.open(tmp_path / JOURNAL))
    with HostileServer(rate_limited(1, retry_after="0")) as server, _client(server) as client:
        client.check_server()  # a second run: a new client, whose own count starts at 0
        query(client, images, CLASSES, "probs", QueryLog.open(tmp_path / JOURNAL))
        assert client.rate_limited == 1
    log = QueryLog.open(tmp_path / JOURNAL)
    assert log.rate_limited == 3 and sorted(log.targets) == list(range(20))


# --- a killed query run resumes without sending an answered image again ---------------------
QUERY_SCRIPT = """
import sys
from pathlib import Path
from offload_helpers import build_artifacts, png_bytes, sample_images
from veil.edge.client import VeilClient
from veil.pipeline.blackbox import QueryLog, query
from hostile_server import CLASSES
client = VeilClient(sys.argv[1], lambda x: x, top_k=10, batch_size=4)
client.check_server()
query(client, sample_images(64), CLASSES, "probs", QueryLog.open(Path(sys.argv[2])))
"""


@pytest.mark.slow
def test_a_killed_query_run_resumes_and_counts_every_image_sent_exactly(tmp_path):
    def slow(n, handler):
        time.sleep(0.05)
        return good_answer(n)
    journal = tmp_path / JOURNAL
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    with HostileServer(slow, health={"classes": CLASSES, "max_images": 4}) as server:
        cmd = [sys.executable, "-c", QUERY_SCRIPT, server.url, str(journal)]
        proc = subprocess.Popen(cmd, env=env)
        deadline = time.monotonic() + 120
        while server.requests < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = QueryLog.open(journal)
        sent_before = server.images
        assert 0 < len(first.targets) < 64 and first.sent == sent_before
        assert subprocess.run(cmd, env=env, timeout=120).returncode == 0
    log = QueryLog.open(journal)
    assert sorted(log.targets) == list(range(64))
    assert log.sent == server.images, "every image that reached the server is counted"
    # only images without a kept answer were sent again: at most the one request in flight
    assert server.images - 64 == sent_before - len(first.targets) <= 4


def test_a_journal_torn_by_a_kill_is_cut_at_its_last_whole_line(tmp_path):
    journal = tmp_path / JOURNAL
    journal.write_text(json.dumps({"send": [0, 1]}) + "\n"
                       + json.dumps({"answer": [0, 1], "targets": [[1.0, 0.0], [0.5, 0.5]]})
                       + "\n"
                       + json.dumps({"send": [2, 3]}) + "\n" + '{"answer": [2, 3], "tar')
    log = QueryLog.open(journal)
    assert log.sent == 4 and sorted(log.targets) == [0, 1] and log.requests == 2
    assert journal.read_text().endswith('{"send": [2, 3]}\n')


# --- stored query state is trusted no more than a server --------------------------------------
def _journal(path, *records, tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


UNIFORM = [0.1] * 10


@pytest.mark.parametrize("records, message", [
    ([{"answer": [0, 1], "targets": [UNIFORM, UNIFORM]}],
     "line 1: an answer without the send record of its images"),
    ([{"send": [0, 1]}, {"answer": [0, 2], "targets": [UNIFORM, UNIFORM]}],
     "line 2: an answer without the send record of its images"),
    ([{"send": [0]}, {"answer": [0], "targets": [[-3.0] + [0.4] * 10]}],
     "the target of image 0: a negative target"),
    ([{"send": [0]}, {"answer": [0], "targets": [[float("nan")] * 10]}],
     "the target of image 0: a target that is not a finite number"),
    ([{"send": [0]}, {"answer": [0], "targets": [[0.5, 0.5]]}],
     "the target of image 0: 2 classes, the run's data has 10"),
    ([{"send": [0]}, {"answer": [0], "targets": [[0.9] * 10]}],
     "a row of targets that does not add up to 1"),
    ([{"send": [0]}, {"answer": [0], "targets": [UNIFORM], "rate_limited": -4}],
     "rate_limited -4 is not a count"),
    ([{"send": [0, 99]}], "images [0, 99] are not distinct indices of the run's images"),
    ([{"send": [3, 3]}], "images [3, 3] are not distinct"),
    ([{"send": [0]}, {"answer": [0], "targets": [UNIFORM]}, {"send": [0]}],
     "line 3: sends image 0 again, which has an answer"),
    ([{"send": [0]}, {"tally": 5}], "line 2: neither a send nor an answer record"),
])
def test_a_forged_journal_is_refused_naming_the_file_and_line(tmp_path, records, message):
    path = tmp_path / JOURNAL
    _journal(path, *records)
    before = path.read_bytes()
    with pytest.raises(ValueError) as err:
        QueryLog.open(path, n_images=20, n_classes=10)
    assert str(err.value).startswith(f"{path}, line ") and message in str(err.value)
    assert path.read_bytes() == before, "nothing is cut from a journal that is refused"


def test_a_bad_line_mid_journal_is_an_error_not_the_silent_end_of_it(tmp_path):
    path = tmp_path / JOURNAL
    path.write_text(json.dumps({"send": [0, 1]}) + "\n" + '{"answer": [0, 1], "tar\n'
                    + json.dumps({"send": [2, 3]}) + "\n")  # a send record after the bad line
    with pytest.raises(ValueError, match=r"line 2: .*the journal is damaged or was edited"):
        QueryLog.open(path)
    assert path.read_text().endswith('{"send": [2, 3]}\n')


def test_a_journal_is_bound_to_its_run(tmp_path):
    path = tmp_path / JOURNAL
    log = QueryLog.open(path, run="run-a", n_images=4, n_classes=10)
    log.append({"send": [0, 1]})
    assert QueryLog.open(path, run="run-a").sent == 2
    with pytest.raises(ValueError, match="line 1: written for another run"):
        QueryLog.open(path, run="run-b")
    _journal(path, {"send": [0, 1]})
    with pytest.raises(ValueError, match=f"{path}: names no run"):
        QueryLog.open(path, run="run-a")
    path.write_text('{"send": [0, 1]')  # only a torn line: nothing was sent, the run is named
    assert QueryLog.open(path, run="run-a").sent == 0
    assert path.read_text() == json.dumps({"run": "run-a"}) + "\n"


def test_a_whole_record_without_its_newline_is_cut_as_torn(tmp_path):
    path = tmp_path / JOURNAL
    _journal(path, {"send": [0, 1]}, {"answer": [0, 1], "targets": [UNIFORM, UNIFORM]},
             tail=json.dumps({"send": [2, 3]}))  # killed before the newline: never sent
    log = QueryLog.open(path)
    assert log.sent == 2 and log.requests == 1 and sorted(log.targets) == [0, 1]
    log.append({"send": [2, 3]})
    assert QueryLog.open(path).sent == 4
