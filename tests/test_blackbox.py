"""A classifier that can only be queried: `veil blackbox` against a real `veil serve` on loopback
(query, distil a surrogate, train an obfuscator against it, measure on the server)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from veil.cli import main
from veil.core.checkpoint import load_checkpoint
from veil.serve.app import ServerConfig, create_app
from veil.serve.inference import Predictor
from veil.serve.server import BackgroundServer
from veil.train import classifier as clf


@pytest.fixture(scope="module")
def server_classifier(tmp_path_factory):
    out = tmp_path_factory.mktemp("cloud")
    clf.train_classifier(clf.make_config("fastnet_tiny", data="sample", out=str(out), epochs=6,
                                         batch_size=32, lr=0.5, warmup_fraction=0.3,
                                         label_smoothing=0.0), quiet=True)
    return out / "model.pt"


@pytest.mark.slow
def test_blackbox_end_to_end_counts_every_image_it_sends(server_classifier, tmp_path):
    received: list[np.ndarray] = []
    app = create_app(Predictor.from_checkpoint(server_classifier), ServerConfig(max_images=16),
                     on_receive=lambda raws, images: received.extend(images))
    out = tmp_path / "bb"
    argv = ["blackbox", "--data", "sample", "--out", str(out), "--query-budget", "150",
            "--surrogate", "fastnet_tiny", "--surrogate-epochs", "3", "--recipe", "fast",
            "--epochs", "1", "--batch-size", "50", "--eval-images", "60", "--quiet"]
    with BackgroundServer(app) as url:
        assert main([*argv, "--classifier-url", url]) == 0
        sent_first = len(received)
        assert main([*argv, "--classifier-url", url]) == 0  # finished steps are reused
    report = json.loads((out / "blackbox.json").read_text())
    q = report["queries"]
    assert q == {"training_images_sent": 150, "training_requests": 10,  # 16 images a request
                 "measuring_images_sent": 120, "bad_answers": 0, "rate_limited": 0,
                 "answers": "probs", "refinement_images_sent": 0}
    assert sent_first == 150 + 120, "every image that reached the server is counted"
    assert len(received) == sent_first + 120, "a rerun only measures again; it queries nothing"
    with np.load(out / "queries.npz") as z:
        images, probs = z["images"], z["probs"]
    assert images.shape == (150, 32, 32, 3)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    # the surrogate's targets are exactly the answered probabilities (not the labels, not a
    # guess): what the server's own classifier gives for those images
    np.testing.assert_allclose(probs, Predictor.from_checkpoint(server_classifier)(images),
                               atol=1e-5)
    # the queries were the public training images as they are, nothing else
    assert all(np.array_equal(a, b) for a, b in zip(received[:150], images, strict=True))
    for key in ("server_plain_acc", "server_obfuscated_acc"):
        assert 0 <= report[key] <= 1
    surrogate = load_checkpoint(out / "surrogate" / "model.pt")
    # how well 3 epochs on 150 images fit depends on the CPU's kernels; that the surrogate was
    # trained on these answers does not
    assert surrogate["kind"] == "classifier"
    assert surrogate["config"]["queries"] == str(out / "queries.npz")
    assert load_checkpoint(out / "obfuscator" / "model.pt")["classifier"]["path"] == \
        str(out / "surrogate" / "model.pt")
    assert "images sent" in (out / "blackbox.md").read_text()


def test_blackbox_refuses_bad_budgets_and_a_server_of_other_classes(tmp_path, capsys):
    import torch

    seven = Predictor(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 7)),
                      [f"c{i}" for i in range(7)])
    with BackgroundServer(create_app(seven, ServerConfig())) as url:
        args = ["blackbox", "--classifier-url", url, "--data", "sample", "--quiet"]
        assert main([*args, "--out", str(tmp_path / "a"), "--query-budget", "0"]) != 0
        assert "--query-budget must be at least 1" in capsys.readouterr().err
        assert main([*args, "--out", str(tmp_path / "b"), "--query-budget", "10"]) != 0
        assert f"the server at {url} classifies 7 classes, the public data has 10" in \
            capsys.readouterr().err


@pytest.mark.slow
def test_blackbox_python_api_matches_the_command(server_classifier, tmp_path):
    import veil

    with BackgroundServer(create_app(Predictor.from_checkpoint(server_classifier),
                                     ServerConfig(max_images=16))) as url:
        result = veil.train_blackbox_obfuscator(
            url, data="sample", out=tmp_path / "bb", query_budget=40, surrogate="fastnet_tiny",
            surrogate_epochs=1, recipe="fast", epochs=1, batch_size=40, eval_images=20,
            quiet=True)
        with pytest.raises(TypeError, match="unknown setting 'query_budgets'; settings: .*"
                                            "query_budget"):
            veil.train_blackbox_obfuscator(url, data="sample", out=tmp_path / "x",
                                           query_budgets=5)
    assert result.report["queries"]["training_images_sent"] == 40
    assert result.report["measured_on"] == 20
    assert not result.obfuscator.training
    assert result.checkpoint == tmp_path / "bb" / "obfuscator" / "model.pt"
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_blackbox_run_killed_in_the_obfuscators_warm_start_resumes(server_classifier, tmp_path,
                                                                      monkeypatch):
    from veil.core.checkpoint import save_checkpoint
    from veil.train import warm_start

    received: list[np.ndarray] = []
    app = create_app(Predictor.from_checkpoint(server_classifier), ServerConfig(max_images=50),
                     on_receive=lambda raws, images: received.extend(images))
    out = tmp_path / "bb"
    argv = ["blackbox", "--data", "sample", "--out", str(out), "--query-budget", "100",
            "--surrogate", "fastnet_tiny", "--surrogate-epochs", "1", "--warm-start",
            "encoder:2", "--epochs", "1", "--batch-size", "50", "--eval-images", "20",
            "--quiet"]

    def save_then_die(payload, path):
        save_checkpoint(payload, path)
        raise KeyboardInterrupt  # killed right after the warm start's first saved state

    with BackgroundServer(app) as url:
        monkeypatch.setattr(warm_start, "save_checkpoint", save_then_die)
        assert main([*argv, "--classifier-url", url]) == 130  # as after Ctrl-C
        held = sorted(p.name for p in (out / "obfuscator").glob("*.pt"))
        assert held == ["warm-start-encoder.pt"] and len(received) == 100
        monkeypatch.setattr(warm_start, "save_checkpoint", save_checkpoint)
        assert main([*argv, "--classifier-url", url]) == 0
    assert len(received) == 100 + 2 * 20, "the rerun queried nothing again, only measured"
    obfuscator = load_checkpoint(out / "obfuscator" / "model.pt")
    assert obfuscator["config"]["warm_start"] == {"encoder": 2.0}


# --- a forged or damaged queries.npz is refused before anything learns from it ----------------
def _forge(path, run_of, queried, changes) -> None:
    import io

    arrays = {"images": queried, "probs": np.full((len(queried), 10), 0.1, np.float32),
              "requests": np.int64(2), "sent": np.int64(len(queried)),
              "bad_answers": np.int64(0), "rate_limited": np.int64(0),
              "answers": np.str_("probs"), "run": np.str_(run_of), **changes}
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v for k, v in arrays.items() if v is not None})
    path.write_bytes(buffer.getvalue())


@pytest.mark.hostile
@pytest.mark.parametrize("changes, message", [
    ({"probs": np.full((20, 10), -3.0, np.float32)}, "probs: a negative target"),
    ({"probs": np.full((20, 10), np.nan, np.float32)}, "probs: a target that is not a finite"),
    ({"sent": np.int64(-100)}, "sent -100 is not a count"),
    ({"sent": np.int64(5)}, "counts that do not add up for 20 images"),
    ({"bad_answers": np.int64(3)}, "counts that do not add up for 20 images"),
    ({"images": np.zeros((20, 16, 16, 3), np.uint8)},
     "images (16, 16, 3) with 10 classes, the run's are (32, 32, 3)"),
    ({"probs": np.full((8, 10), 0.1, np.float32)}, "probs: 8 rows for 20 images"),
    ({"sent": None}, "holds no 'sent' array"),
    ({"run": np.str_("another")}, "written for another run"),
    ("truncated", "cannot be read as an .npz of arrays"),
])
def test_a_forged_queries_file_is_one_error_naming_it(tmp_path, capsys, changes, message):
    from veil.data import load_dataset
    from veil.pipeline.blackbox import run_id

    images = load_dataset("sample").train.subset(20, 0).images
    out = tmp_path / "bb"
    out.mkdir()
    path = out / "queries.npz"
    _forge(path, run_id(images, 10, "probs"), images,
           {} if changes == "truncated" else changes)
    if changes == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
    code = main(["blackbox", "--classifier-url", "http://127.0.0.1:9", "--data", "sample",
                 "--out", str(out), "--query-budget", "20", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}" in err and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (out / "surrogate").exists(), "nothing was trained on it"


def test_the_python_api_builds_no_parser_and_settings_are_checked_when_made():
    import inspect

    import veil.api
    from veil.pipeline.blackbox import BlackboxSettings

    assert "argparse" not in inspect.getsource(veil.api)
    settings = BlackboxSettings("http://127.0.0.1:1", "sample", "out")
    assert (settings.query_budget, settings.answers, settings.surrogate) == (10_000, "probs",
                                                                            "fastnet")
    with pytest.raises(ValueError, match="--query-budget must be at least 1, got 0"):
        BlackboxSettings("http://127.0.0.1:1", "sample", "out", query_budget=0)
    with pytest.raises(ValueError, match="--answers 'top3'"):
        BlackboxSettings("http://127.0.0.1:1", "sample", "out", answers="top3")


@pytest.mark.slow
def test_refine_rounds_query_the_obfuscators_own_images_and_resume_without_sending(
        server_classifier, tmp_path):
    import veil

    settings = dict(data="sample", out=tmp_path / "bb", query_budget=40,
                    surrogate="fastnet_tiny", surrogate_epochs=1, recipe="fast", epochs=1,
                    batch_size=40, eval_images=20, refine_rounds=1, refine_surrogate_epochs=1,
                    quiet=True)
    with BackgroundServer(create_app(Predictor.from_checkpoint(server_classifier),
                                     ServerConfig(max_images=16))) as url:
        result = veil.train_blackbox_obfuscator(url, **settings)
        again = veil.train_blackbox_obfuscator(url, **settings)  # every step resumes
    report = result.report
    assert report["queries"]["refinement_images_sent"] == 40
    assert report["refinement"][0]["images_sent"] == 40
    assert result.checkpoint == tmp_path / "bb" / "obfuscator" / "model.pt"
    assert report["obfuscator"]["path"] == str(tmp_path / "bb" / "refine1" / "obfuscator"
                                               / "model.pt")
    tuned = load_checkpoint(tmp_path / "bb" / "refine1" / "obfuscator" / "model.pt")
    assert tuned["config"]["init"] == str(tmp_path / "bb" / "obfuscator" / "model.pt")
    assert tuned["config"]["classifier"].endswith("refine1/surrogate/model.pt")
    refined = load_checkpoint(tmp_path / "bb" / "refine1" / "surrogate" / "model.pt")
    assert refined["config"]["init"] == str(tmp_path / "bb" / "surrogate" / "model.pt")
    assert len(np.load(tmp_path / "bb" / "refine1" / "merged.npz")["images"]) == 80
    assert again.report["queries"] == report["queries"]
    assert "1 refinement round(s)" in (tmp_path / "bb" / "blackbox.md").read_text()
