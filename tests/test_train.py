"""Training: real short runs on CPU, frozen classifier, disjoint optimisers, resume, DDP, 8 bits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO
from veil.cli import main
from veil.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from veil.core.eightbit import quantize_8bit, quantize_8bit_ste, to_uint8
from veil.data import TensorLoader, load_dataset
from veil.models import create_model
from veil.models.loading import load_classifier, load_obfuscator_pair
from veil.train import classifier as clf
from veil.train import obfuscator as obf
from veil.train.common import RunDirError
from veil.train.losses import GradientReversal
from veil.train.warm_start import pretrain_identity


def tiny_classifier_config(out: Path, **kw) -> clf.ClassifierConfig:
    values = dict(data="sample", out=str(out), epochs=3, batch_size=32, lr=0.5, seed=0,
                  warmup_fraction=0.3, label_smoothing=0.0)
    values.update(kw)
    return clf.make_config("fastnet_tiny", **values)


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clf")
    clf.train_classifier(tiny_classifier_config(out, epochs=6), quiet=True)
    return out / "model.pt"


def tiny_obfuscator_config(classifier: Path, out: Path, **kw) -> obf.ObfuscatorConfig:
    values = dict(classifier=str(classifier), data="sample", out=str(out), epochs=2,
                  batch_size=50, seed=0, test_subset=100)
    values.update(kw)
    return obf.make_config("fast", **values)


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# --- classifier -----------------------------------------------------------------------------
@pytest.mark.slow
def test_classifier_training_loss_falls_and_run_folder_is_complete(trained_classifier):
    run = trained_classifier.parent
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.05
    assert {"loss", "train_acc", "test_acc", "images_per_s", "wall_s"} <= set(rows[0])
    for name in ("config.yaml", "last.pt", "last.pt.sha256", "model.pt", "model.pt.sha256"):
        assert (run / name).exists(), name
    payload = load_checkpoint(trained_classifier)
    assert payload["kind"] == "classifier" and payload["model_name"] == "fastnet_tiny"
    assert payload["metrics"]["epoch"] == 6 and len(payload["classes"]) == 10


def interrupt_after(epochs: int):
    """An on_epoch_end callback that stops the run like Ctrl-C after `epochs` epochs."""
    def callback(row: dict) -> None:
        if row["epoch"] >= epochs:
            raise KeyboardInterrupt
    return callback


@pytest.mark.slow
def test_classifier_resume_equals_uninterrupted_run(tmp_path):
    straight = tiny_classifier_config(tmp_path / "a", epochs=2)
    clf.train_classifier(straight, quiet=True)
    broken = tiny_classifier_config(tmp_path / "b", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        clf.train_classifier(broken, quiet=True, on_epoch_end=interrupt_after(1))
    assert not (tmp_path / "b" / "model.pt").exists()
    clf.train_classifier(broken, resume=True, quiet=True)
    a = load_checkpoint(tmp_path / "a" / "model.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "model.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert [r["epoch"] for r in read_metrics(tmp_path / "b")] == [1, 2]


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "veil", "train", "classifier", "--model", "fastnet_tiny",
           "--data", "sample", "--out", str(out), "--epochs", "30", "--batch-size", "32",
           "--threads", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "last.pt.sha256").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(out / "last.pt")["epoch"]
    assert 1 <= killed_at < 30 and not (out / "model.pt").exists()
    assert main(["train", "classifier", "--model", "fastnet_tiny", "--data", "sample", "--out",
                 str(out), "--epochs", "30", "--batch-size", "32", "--resume", "--quiet"]) == 0
    assert [r["epoch"] for r in read_metrics(out)] == list(range(1, 31))
    assert not list(out.glob(".*.tmp")), "no half-written files left behind"


def test_classifier_defaults_are_overridable():
    config = clf.make_config("fastnet", epochs=3, lr=None)
    assert config.epochs == 3 and config.lr == clf.MODEL_DEFAULTS["fastnet"]["lr"]
    with pytest.raises(ValueError, match="not a classifier"):
        clf.train_classifier(clf.make_config("obfuscator", out="/tmp/never"))


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", "-m", "veil", "train", "classifier", "--model",
           "fastnet_tiny", "--data", "sample", "--out", str(out), "--epochs", "1",
           "--batch-size", "32", "--threads", "1", "--device", "cpu", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_metrics(out)
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    # every image of the epoch was seen once across the two ranks
    assert load_checkpoint(out / "model.pt")["kind"] == "classifier"


def _average_two_ranks(rank: int, store_path: str, result_path: str) -> None:
    import torch.distributed as dist

    from veil.train.common import Distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    net = torch.nn.Linear(3, 2)
    for p in net.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    with torch.no_grad():
        net.weight.fill_(float(rank))
    ddp = Distributed(torch.device("cpu"))
    ddp.average_gradients(net)
    ddp.broadcast(net)
    if rank == 1:
        torch.save({"grads": [p.grad for p in net.parameters()], "weight": net.weight.detach()},
                   result_path)
    ddp.close()


@pytest.mark.slow
def test_gradients_are_averaged_and_weights_broadcast_over_two_ranks(tmp_path):
    """The obfuscator pair's data parallelism: mean gradients, rank 0's weights everywhere."""
    result = tmp_path / "rank1.pt"
    torch.multiprocessing.spawn(_average_two_ranks, args=(str(tmp_path / "store"), str(result)),
                                nprocs=2)
    got = torch.load(result, weights_only=True)
    assert all(torch.equal(g, torch.full_like(g, 1.5)) for g in got["grads"])
    assert torch.equal(got["weight"], torch.zeros(2, 3))


@pytest.mark.slow
def test_obfuscator_ddp_two_processes_gloo(trained_classifier, tmp_path):
    out = tmp_path / "ddp-obf"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", "-m", "veil", "train", "obfuscator", "--classifier",
           str(trained_classifier), "--data", "sample", "--out", str(out), "--epochs", "1",
           "--batch-size", "50", "--set", "warm_start=encoder:0.5", "--set",
           "warm_start_batch_size=50", "--set", "test_subset=100", "--set", "curve_every=250",
           "--threads", "1", "--device", "cpu", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [0, 1], "one warm-start row and one epoch, by rank 0"
    curve = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    # 100 warm-start images + 200 adversarial ones (4 global batches of 50, 25 per rank): one
    # point at 250, written by rank 0 alone and counting global batches, not one rank's share
    assert [c["images"] for c in curve] == [250]
    o, _, payload = load_obfuscator_pair(out / "model.pt")
    assert payload["metrics"]["epoch"] == 1 and 0 <= payload["metrics"]["obfuscated_acc"] <= 1


# --- obfuscator -----------------------------------------------------------------------------
def test_adversarial_step_freezes_classifier_and_optimisers_are_disjoint(trained_classifier):
    classifier, _ = load_classifier(trained_classifier)
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    config = tiny_obfuscator_config(trained_classifier, "unused")
    torch.manual_seed(0)
    o, d = create_model("obfuscator"), create_model("deobfuscator")
    step = obf.AdversarialStep(o, d, classifier, config, torch.device("cpu"))
    ids_o = {id(p) for g in step.opt_obfuscator.param_groups for p in g["params"]}
    ids_d = {id(p) for g in step.opt_deobfuscator.param_groups for p in g["params"]}
    assert ids_o.isdisjoint(ids_d)
    assert ids_o == {id(p) for p in o.parameters()} and ids_d == {id(p) for p in d.parameters()}
    x = torch.rand(16, 3, 32, 32)
    y = torch.randint(0, 10, (16,))
    step(x, y, lam=1.0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in o.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    assert all(p.grad is None for p in classifier.parameters())
    for k, v in classifier.state_dict().items():
        assert torch.equal(v, before[k]), f"frozen classifier changed: {k}"


def one_step(classifier, fraction: float, x: torch.Tensor, y: torch.Tensor):
    """A fresh pair (seeded) after one adversarial step; the deobfuscator's input batch sizes."""
    config = replace(obf.make_config("fast"), deobfuscator_fraction=fraction)
    torch.manual_seed(0)
    o, d = create_model("obfuscator"), create_model("deobfuscator")
    seen: list[int] = []
    d.register_forward_pre_hook(lambda _, args: seen.append(len(args[0])))
    out = obf.AdversarialStep(o, d, classifier, config, torch.device("cpu"))(x, y, lam=1.0)
    return o, d, out, seen


@pytest.mark.slow
def test_a_deobfuscator_fraction_trains_it_on_that_share_of_the_batch(trained_classifier):
    classifier, _ = load_classifier(trained_classifier)
    torch.manual_seed(1)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    o_all, d_all, out_all, seen_all = one_step(classifier, 1.0, x, y)
    o_part, d_part, out_part, seen_part = one_step(classifier, 0.25, x, y)
    assert seen_all == [16] and seen_part == [4]
    for o, d in ((o_all, d_all), (o_part, d_part)):  # both networks still learn
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in o.parameters())
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    assert all(p.grad is None for p in classifier.parameters())
    # the classification term is the whole batch's either way; the privacy term differs
    assert out_part["loss_c"].item() == out_all["loss_c"].item()
    assert out_part["correct"].item() == out_all["correct"].item()
    assert out_part["loss_r"].item() != out_all["loss_r"].item()
    assert not all(torch.equal(a.grad, b.grad)
                   for a, b in zip(o_all.parameters(), o_part.parameters(), strict=True))


@pytest.mark.slow
def test_the_deobfuscators_share_is_rounded_up_and_at_least_two(trained_classifier):
    classifier, _ = load_classifier(trained_classifier)
    torch.manual_seed(1)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    assert one_step(classifier, 0.01, x, y)[3] == [2]  # BatchNorm needs two
    assert one_step(classifier, 0.3, x, y)[3] == [5]
    o_most, d_most, _, seen = one_step(classifier, 0.99, x, y)
    o_all, d_all, _, _ = one_step(classifier, 1.0, x, y)
    assert seen == [16]  # every image: the same step as the default's, bit for bit
    for a, b in zip([*o_most.parameters(), *d_most.parameters()],
                    [*o_all.parameters(), *d_all.parameters()], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fraction, message", [
    (0.0, "setting deobfuscator_fraction = 0.0: must be above 0"),
    (1.5, "a share of the batch, at most 1"),
])
def test_a_deobfuscator_fraction_outside_0_1_is_refused(fraction, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        obf.make_config("fast", deobfuscator_fraction=fraction)


@pytest.fixture(scope="module")
def second_classifier(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clf-b")
    clf.train_classifier(tiny_classifier_config(out, epochs=3, seed=1), quiet=True)
    return out / "model.pt"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mean", "cycle"])
def test_ensemble_step_uses_its_members_as_asked(trained_classifier, second_classifier, mode):
    """mean: every step's loss is the members' mean; cycle: one member per step, in turn."""
    a, b = (load_classifier(p)[0] for p in (trained_classifier, second_classifier))
    config = tiny_obfuscator_config(trained_classifier, "unused", ensemble_mode=mode)
    torch.manual_seed(0)
    o, d = create_model("obfuscator").eval(), create_model("deobfuscator")
    step = obf.AdversarialStep(o, d, [a, b], config, torch.device("cpu"))
    singles = [obf.AdversarialStep(o, d, m, config, torch.device("cpu")) for m in (a, b)]
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    with torch.no_grad():
        sent = o(x)
        alone = [s._utility(x, sent, y)[1].item() for s in singles]
        got = [step._utility(x, sent, y)[1].item() for _ in range(3)]
    assert alone[0] != pytest.approx(alone[1])
    want = [sum(alone) / 2] * 3 if mode == "mean" else [alone[0], alone[1], alone[0]]
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.slow
def test_ensemble_obfuscator_records_and_measures_every_member(trained_classifier,
                                                               second_classifier, tmp_path,
                                                               capsys):
    out = tmp_path / "ens"
    assert main(["train", "obfuscator", "--classifier", str(trained_classifier),
                 "--classifier", str(second_classifier), "--set", "ensemble_mode=cycle",
                 "--recipe", "fast", "--data", "sample", "--out", str(out), "--epochs", "1",
                 "--batch-size", "50", "--set", "test_subset=100", "--quiet"]) == 0
    payload = load_checkpoint(out / "model.pt")
    assert [m["path"] for m in payload["classifier"]["ensemble"]] == [str(second_classifier)]
    members = payload["metrics"]["members"]
    assert [m["sha256"] for m in members] == [payload["classifier"]["sha256"],
                                              payload["classifier"]["ensemble"][0]["sha256"]]
    assert members[0]["obfuscated_acc"] == pytest.approx(payload["metrics"]["obfuscated_acc"])
    tables = tmp_path / "tables"
    assert main(["evaluate", "--classifiers", str(trained_classifier), str(second_classifier),
                 "--obfuscators", str(out / "model.pt"), "--data", "sample", "--test-subset",
                 "40", "--out", str(tables), "--quiet"]) == 0
    t3 = json.loads((tables / "tables.json").read_text())["table3"]
    assert t3["members"] == [[0, 1]] and t3["trained_for"] == [0]
    md = (tables / "tables.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| obf-ensemble2-cycle-")]
    models, table3 = rows[0], rows[-1]  # the Models section first, Table 3 last
    assert f"| {t3['classifiers'][0]} + {t3['classifiers'][1]} |" in models
    assert table3.count(" *") == 2, "both members are starred in Table 3"
    assert main(["train", "obfuscator", "--classifier", str(trained_classifier),
                 "--classifier", str(trained_classifier), "--data", "sample", "--out",
                 str(tmp_path / "twice"), "--epochs", "1", "--quiet"]) != 0
    assert "is given twice" in capsys.readouterr().err


def test_gradient_reversal_gives_each_network_its_own_objective():
    """O gets d(L_c - lam L_r), D gets d(L_r): checked against two separate backward passes."""
    torch.manual_seed(0)
    o, d = create_model("obfuscator"), create_model("deobfuscator")
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    x, y, lam = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,)), 0.7

    def losses():
        s = o(x)
        return (torch.nn.functional.cross_entropy(head(s), y),
                torch.nn.functional.mse_loss(d(GradientReversal.apply(s, lam)), x),
                torch.nn.functional.mse_loss(d(s), x))

    lc, lr_grl, _ = losses()
    grads = torch.autograd.grad(lc + lr_grl, list(o.parameters()) + list(d.parameters()))
    lc, _, lr = losses()
    want_o = torch.autograd.grad(lc - lam * lr, list(o.parameters()), retain_graph=True)
    want_d = torch.autograd.grad(lr, list(d.parameters()))
    for g, w in zip(grads, list(want_o) + list(want_d), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_obfuscator_training_improves_and_resumes(trained_classifier, tmp_path):
    straight = tiny_obfuscator_config(trained_classifier, tmp_path / "a", epochs=2)
    obf.train_obfuscator(straight, quiet=True)
    rows = read_metrics(tmp_path / "a")
    assert rows[-1]["loss_c"] < rows[0]["loss_c"]
    for key in ("plain_acc", "obfuscated_acc", "deobfuscator_psnr", "deobfuscator_ssim"):
        assert key in rows[0]
    broken = tiny_obfuscator_config(trained_classifier, tmp_path / "b", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        obf.train_obfuscator(broken, quiet=True, on_epoch_end=interrupt_after(1))
    obf.train_obfuscator(broken, resume=True, quiet=True)
    a = load_checkpoint(tmp_path / "a" / "model.pt")
    b = load_checkpoint(tmp_path / "b" / "model.pt")
    for net in ("obfuscator", "deobfuscator"):
        for k in a[net]:
            torch.testing.assert_close(a[net][k], b[net][k], rtol=0, atol=1e-5)
    assert a["classifier"]["model_name"] == "fastnet_tiny"
    o, d, payload = load_obfuscator_pair(tmp_path / "a" / "model.pt")
    assert not o.training and payload["metrics"] == rows[-1]


@pytest.mark.slow
def test_identity_warm_start_passes_the_image_through(trained_classifier, tmp_path):
    ds = load_dataset("sample")
    loader = TensorLoader(ds.train, 50, shuffle=True, seed=0)
    x = next(iter(TensorLoader(ds.test, 50)))[0]
    torch.manual_seed(0)
    obfuscator = create_model("obfuscator")
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(obfuscator(x), x).item()
    pretrain_identity(obfuscator, loader, steps=40, lr=5e-3, device=torch.device("cpu"))
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(obfuscator(x), x).item()
    assert after < 0.5 * before

    config = tiny_obfuscator_config(trained_classifier, tmp_path / "run", epochs=1,
                                    warm_start={"identity": 0.5})
    obf.train_obfuscator(config, quiet=True)
    rows = read_metrics(tmp_path / "run")
    assert rows[0]["epoch"] == 0 and rows[0]["identity_mse"] > 0
    assert rows[1]["epoch"] == 1 and rows[1]["wall_s"] > rows[0]["wall_s"]


def test_paper_recipe_is_appendix_a():
    c = obf.make_config("paper")
    assert (c.epochs, c.lr, c.schedule, c.step_epochs) == (100, 1e-3, "step", 30)
    assert c.flip and c.crop_padding == 0 and c.distill == 0 and c.lam_ramp_epochs == 0
    with pytest.raises(ValueError, match="unknown recipe"):
        obf.make_config("nope")


def test_lambda_warmup():
    c = obf.make_config("fast", lam=2.0, lam_ramp_epochs=1.0)
    assert obf.lambda_at(c, 0.0) == 0.0 and obf.lambda_at(c, 0.5) == 1.0
    assert obf.lambda_at(c, 3.0) == 2.0


# --- 8-bit path -----------------------------------------------------------------------------
def test_quantisation_is_8_bit_and_straight_through():
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    q = quantize_8bit_ste(x)
    levels = q.detach() * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert (q - x).abs().max() <= 0.5 / 255 + 1e-6
    q.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert torch.equal(to_uint8(quantize_8bit(x.detach())).float() / 255, quantize_8bit(x.detach()))


@pytest.mark.slow
def test_reported_obfuscated_accuracy_is_on_the_transmitted_uint8_image(trained_classifier,
                                                                        tmp_path):
    obf.train_obfuscator(tiny_obfuscator_config(trained_classifier, tmp_path, epochs=1),
                         quiet=True)
    o, d, payload = load_obfuscator_pair(tmp_path / "model.pt")
    classifier, _ = load_classifier(trained_classifier)
    split = load_dataset("sample").test.subset(100, seed=0)
    x = torch.as_tensor(split.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        wire = to_uint8(o(x)).numpy()  # what leaves the device
        received = torch.as_tensor(wire).float() / 255
        acc = (classifier(received).argmax(1).numpy() == split.labels).mean()
    assert wire.dtype == np.uint8
    assert acc == pytest.approx(payload["metrics"]["obfuscated_acc"], abs=1e-9)


# --- errors ---------------------------------------------------------------------------------
def test_missing_classifier_checkpoint(tmp_path, capsys):
    code = main(["train", "obfuscator", "--classifier", str(tmp_path / "nope.pt"), "--data",
                 "sample", "--out", str(tmp_path / "o")])
    assert code == 2 and "checkpoint not found" in capsys.readouterr().err


@pytest.mark.hostile
def test_corrupt_checkpoint_is_refused(trained_classifier, tmp_path):
    bad = tmp_path / "model.pt"
    data = bytearray(trained_classifier.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    (tmp_path / "model.pt.sha256").write_text(
        (trained_classifier.parent / "model.pt.sha256").read_text())
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(bad)


def _flip_a_weight_byte(path: Path, weight: torch.Tensor) -> None:
    """Flip one byte inside `weight`'s stored bytes (the zip keeps tensors uncompressed)."""
    data = bytearray(path.read_bytes())
    at = data.find(weight.numpy().tobytes()[:64])
    assert at > 0, "the weight's bytes are not in the file"
    data[at + 3] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.hostile
def test_flipped_tensor_bytes_are_refused_with_or_without_the_sidecar(trained_classifier,
                                                                      tmp_path):
    payload = load_checkpoint(trained_classifier)
    weight = next(v for v in payload["model"].values() if v.dim() == 1 and v.numel() >= 16
                  and v.is_floating_point())
    save_checkpoint(payload, tmp_path / "model.pt")
    _flip_a_weight_byte(tmp_path / "model.pt", weight)
    with pytest.raises(CheckpointError, match="sha256 mismatch.*corrupt or was modified"):
        load_classifier(tmp_path / "model.pt")
    (tmp_path / "model.pt.sha256").unlink()
    with pytest.raises(CheckpointError, match="content sha256 mismatch.*corrupt or was modified"):
        load_classifier(tmp_path / "model.pt")
    from veil.serve.inference import Predictor
    with pytest.raises(CheckpointError, match="corrupt or was modified"):
        Predictor.from_checkpoint(tmp_path / "model.pt")


def test_the_content_hash_survives_a_reload_and_a_resave(trained_classifier, tmp_path):
    from veil.core.checkpoint import content_sha256
    payload = load_checkpoint(trained_classifier)
    assert "content_sha256" not in payload  # checked and removed on load
    save_checkpoint(payload, tmp_path / "a.pt")
    again = load_checkpoint(tmp_path / "a.pt")
    assert content_sha256(again) == content_sha256(payload)
    again["model"][next(iter(again["model"]))].view(-1)[0] += 1
    assert content_sha256(again) != content_sha256(payload)


def test_a_save_killed_between_file_and_sidecar_leaves_a_loadable_checkpoint(tmp_path,
                                                                              monkeypatch):
    import veil.core.checkpoint as ckpt

    path = tmp_path / "last.pt"
    save_checkpoint({"kind": "classifier", "epoch": 1}, path)
    write = ckpt.atomic_write

    def killed_before_the_sidecar(target, data):
        if str(target).endswith(".sha256"):
            raise KeyboardInterrupt
        write(target, data)

    monkeypatch.setattr(ckpt, "atomic_write", killed_before_the_sidecar)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"kind": "classifier", "epoch": 2}, path)
    assert not path.with_name("last.pt.sha256").exists()
    assert load_checkpoint(path)["epoch"] == 2  # the content hash still checks it


@pytest.mark.hostile
def test_a_checkpoint_with_neither_hash_nor_sidecar_needs_verify_false(tmp_path):
    torch.save({"kind": "classifier", "model": {"w": torch.ones(3)}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="cannot be verified.*--no-verify"):
        load_checkpoint(tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt", verify=False)["kind"] == "classifier"


def test_veil_serve_has_a_no_verify_escape(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--no-verify" in capsys.readouterr().out


def test_obfuscator_checkpoint_is_not_a_classifier(trained_classifier, tmp_path):
    save_checkpoint({"kind": "obfuscator"}, tmp_path / "o.pt")
    with pytest.raises(ValueError, match="not a classifier"):
        load_classifier(tmp_path / "o.pt")
    with pytest.raises(ValueError, match="not an obfuscator"):
        load_obfuscator_pair(trained_classifier)


def test_data_with_other_classes_than_the_classifier(trained_classifier, tmp_path):
    from PIL import Image
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            folder = tmp_path / "two" / split / cls
            folder.mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(folder / "0.png")
    config = tiny_obfuscator_config(trained_classifier, tmp_path / "o", data=str(tmp_path / "two"))
    with pytest.raises(ValueError, match="trained on classes"):
        obf.train_obfuscator(config, quiet=True)


def test_non_writable_output_folder(trained_classifier, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="not writable"):
        clf.train_classifier(tiny_classifier_config(blocker / "run"), quiet=True)


def test_existing_run_needs_resume(trained_classifier):
    with pytest.raises(RunDirError, match="--resume"):
        clf.train_classifier(tiny_classifier_config(trained_classifier.parent), quiet=True)


# --- rerunning a run folder's config --------------------------------------------------------
@pytest.mark.slow
def test_a_run_folder_reruns_itself_from_its_config(trained_classifier, tmp_path):
    first = tmp_path / "first"
    assert main(["train", "obfuscator", "--classifier", str(trained_classifier), "--data",
                 "sample", "--out", str(first), "--recipe", "fast", "--epochs", "1",
                 "--batch-size", "50", "--set", "test_subset=100", "--quiet"]) == 0
    again = tmp_path / "again"
    assert main(["train", "obfuscator", "--config", str(first / "config.yaml"), "--out",
                 str(again), "--quiet"]) == 0
    a, b = read_metrics(first)[0], read_metrics(again)[0]
    for key in ("loss_c", "loss_r", "obfuscated_acc", "deobfuscator_ssim"):
        assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6)
    saved = yaml.safe_load((again / "config.yaml").read_text())
    assert saved["out"] == str(again) and saved["recipe"] == "fast" and saved["epochs"] == 1
    # a flag on the command line overrides the file
    third = tmp_path / "third"
    assert main(["train", "obfuscator", "--config", str(first / "config.yaml"), "--out",
                 str(third), "--lam", "0.5", "--epochs", "1", "--quiet"]) == 0
    assert yaml.safe_load((third / "config.yaml").read_text())["lam"] == 0.5


def test_config_file_errors_name_the_problem(tmp_path, capsys):
    bad = tmp_path / "config.yaml"
    bad.write_text("epochs: 2\nlearning_rate: 0.1\n")
    assert main(["train", "classifier", "--config", str(bad)]) == 2
    assert "unknown setting 'learning_rate'" in capsys.readouterr().err
    bad.write_text("- just\n- a list\n")
    assert main(["train", "obfuscator", "--config", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "expected a mapping" in capsys.readouterr().err
    assert main(["train", "classifier", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    bad.write_text("epochs: 2\n")
    assert main(["train", "classifier", "--config", str(bad)]) == 2
    assert "--out is required" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"classes": ["a", "b", "c"]}, "names 3 classes for a model with 10 outputs"),
    ({"classes": [str(i) for i in range(11)]}, "names 11 classes for a model with 10 outputs"),
    ({"model_name": None}, "classifier checkpoint without model_name"),
])
@pytest.mark.hostile
def test_inconsistent_classifier_checkpoints_are_refused_on_load(trained_classifier, tmp_path,
                                                                 change, message):
    payload = load_checkpoint(trained_classifier)
    for key, value in change.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    save_checkpoint(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=message):
        load_classifier(tmp_path / "bad.pt")


@pytest.mark.hostile
def test_an_empty_sha256_sidecar_is_a_clear_error(trained_classifier, tmp_path):
    copy = tmp_path / "model.pt"
    copy.write_bytes(trained_classifier.read_bytes())
    (tmp_path / "model.pt.sha256").write_text("")
    with pytest.raises(CheckpointError, match="empty or not a sha256 line"):
        load_checkpoint(copy)


# --- the co-trained linkage adversary (issue 42 §2) --------------------------------------------
@pytest.mark.slow
def test_a_co_trained_matcher_learns_and_pushes_the_obfuscator_the_other_way(trained_classifier):
    """λ_l > 0: the matcher descends its InfoNCE loss on (sent, photo) pairs, and the obfuscator
    receives that loss's gradient reversed and scaled by λ_l (nothing else changes)."""
    classifier, _ = load_classifier(trained_classifier)
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(2))

    def step_with(lam_link: float):
        config = tiny_obfuscator_config(trained_classifier, "unused", lam_link=lam_link,
                                        link_width=4, quantize=False)
        torch.manual_seed(0)
        o, d = create_model("obfuscator"), create_model("deobfuscator")
        step = obf.AdversarialStep(o, d, classifier, config, torch.device("cpu"), fold=False)
        return step, o, step(x, y, lam=1.0)

    plain_step, plain_o, plain_out = step_with(0.0)
    assert plain_step.matcher is None and plain_out["loss_link"].item() == 0
    step, o, out = step_with(2.0)
    assert out["loss_link"].item() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in step.matcher.parameters())
    ids = [{id(p) for g in opt.param_groups for p in g["params"]}
           for opt in (step.opt_obfuscator, step.opt_deobfuscator, step.opt_matcher)]
    assert ids[0].isdisjoint(ids[2]) and ids[1].isdisjoint(ids[2])
    # the reversed link term reaches the obfuscator (same seed, same batch: only it differs)
    assert not torch.allclose(o.stem[0].weight.grad, plain_o.stem[0].weight.grad)
    # ... and nowhere else: the deobfuscator's gradient is the same with or without it
    assert torch.allclose(step.deobfuscator.stem[0].weight.grad,
                          plain_step.deobfuscator.stem[0].weight.grad)


@pytest.mark.slow
def test_a_run_with_the_linkage_adversary_logs_its_loss_and_resumes_exactly(
        trained_classifier, tmp_path):
    def run(out: Path, interrupt: bool) -> list[dict]:
        config = tiny_obfuscator_config(trained_classifier, out, epochs=2, lam_link=1.0,
                                        link_width=4, train_subset=100)
        if interrupt:
            with pytest.raises(KeyboardInterrupt):
                obf.train_obfuscator(config, quiet=True, on_epoch_end=interrupt_after(1))
            state = torch.load(out / "last.pt", weights_only=True)
            assert {"matcher", "opt_matcher"} <= set(state)
            obf.train_obfuscator(config, resume=True, quiet=True)
        else:
            obf.train_obfuscator(config, quiet=True)
        return [r for r in read_metrics(out) if r["epoch"] > 0]

    straight, resumed = run(tmp_path / "a", False), run(tmp_path / "b", True)
    assert all(r["loss_link"] > 0 for r in straight)
    assert [r["epoch"] for r in resumed] == [1, 2]
    assert resumed[-1]["loss_link"] == pytest.approx(straight[-1]["loss_link"], rel=1e-4)
    assert resumed[-1]["obfuscated_acc"] == pytest.approx(straight[-1]["obfuscated_acc"])


@pytest.mark.slow
def test_a_run_can_start_from_a_trained_pair_and_skips_the_warm_start(trained_classifier,
                                                                     tmp_path):
    from veil.models.loading import load_obfuscator_pair
    from veil.train.common import start_process
    first = tiny_obfuscator_config(trained_classifier, tmp_path / "a", epochs=1,
                                   train_subset=100)
    obf.train_obfuscator(first, quiet=True)
    start, start_deobfuscator, _ = load_obfuscator_pair(tmp_path / "a" / "model.pt")
    config = tiny_obfuscator_config(trained_classifier, tmp_path / "b", epochs=1,
                                    train_subset=100, init=str(tmp_path / "a" / "model.pt"),
                                    warm_start={"encoder": 1.0})
    trainer = obf.ObfuscatorTrainer(config, start_process(config, resume=False))
    for mine, theirs in ((trainer.obfuscator, start), (trainer.deobfuscator, start_deobfuscator)):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(),
                                                     theirs.state_dict().values(), strict=True))
    assert trainer.warm_start(quiet=True) is None  # the encoder stage is skipped
    narrow = replace(config, out=str(tmp_path / "c"), width=0.5)
    with pytest.raises(ValueError, match="an obfuscator of width 1, but this run's width is 0.5"):
        obf.ObfuscatorTrainer(narrow, start_process(narrow, resume=False))


@pytest.mark.hostile
@pytest.mark.timeout(30)
@pytest.mark.parametrize("sidecar", ["zero", "fifo", "huge"])
def test_a_sidecar_that_never_ends_blocks_or_is_huge_is_refused_unread(trained_classifier,
                                                                       tmp_path, sidecar):
    import os
    import shutil

    from veil.core.checkpoint import CheckpointError, load_checkpoint

    path = tmp_path / "model.pt"
    shutil.copy(trained_classifier, path)
    side = tmp_path / "model.pt.sha256"
    if sidecar == "zero":
        side.symlink_to("/dev/zero")
    elif sidecar == "fifo":
        os.mkfifo(side)
    else:
        side.write_text("a" * 64 + " " * 10_000)
    with pytest.raises(CheckpointError, match="model.pt.sha256: not a sha256 line"):
        load_checkpoint(path)


@pytest.mark.hostile
def test_a_device_named_as_a_checkpoint_is_not_a_regular_file():
    from veil.core.checkpoint import CheckpointError, load_checkpoint

    with pytest.raises(CheckpointError, match="/dev/zero: not a regular file"):
        load_checkpoint("/dev/zero")


@pytest.mark.hostile
@pytest.mark.parametrize("size, message", [
    ([100_000, 100_000], "must be between 8 and 2048, got 100000"),
    ([32], "not [height, width]"), ("32x32", "not [height, width]"),
    ([True, 32], "not [height, width]")])
def test_a_recorded_image_size_is_checked_before_anything_is_allocated(trained_classifier,
                                                                       tmp_path, size, message):
    from veil.core.checkpoint import load_checkpoint, save_checkpoint
    from veil.models.loading import load_classifier

    payload = load_checkpoint(trained_classifier)
    payload["image_size"] = size
    save_checkpoint(payload, tmp_path / "big.pt")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_classifier(tmp_path / "big.pt")


@pytest.mark.hostile
@pytest.mark.parametrize("count", [10.0, "10", True, 0])
def test_a_recorded_class_count_that_is_not_a_whole_number_is_one_error(trained_classifier,
                                                                        tmp_path, count):
    from veil.core.checkpoint import load_checkpoint, save_checkpoint
    from veil.models.loading import load_classifier

    payload = load_checkpoint(trained_classifier)
    payload["num_classes"] = count
    save_checkpoint(payload, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="not a whole number of at least 1"):
        load_classifier(tmp_path / "odd.pt")


@pytest.mark.hostile
def test_a_device_as_a_classifier_is_named_as_such():
    from veil.core.checkpoint import CheckpointError
    from veil.models.loading import load_classifier

    with pytest.raises(CheckpointError, match="/dev/zero: not a regular file"):
        load_classifier("/dev/zero")
