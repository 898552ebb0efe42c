"""`veil reproduce`: the tiny scale end to end (interrupted, then resumed), its artefacts, and
the time-budget planning."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from PIL import Image

from veil.cli import main
from veil.pipeline import phases
from veil.pipeline import reproduce as rep
from veil.pipeline.plan import SCALES, TINY_SLOTS, Scale, build_phases
from veil.pipeline.reproduce_budget import Clock, guessed_speed, plan_epochs, share
from veil.train import classifier as clf

SLOTS = [s.name for s in TINY_SLOTS]
INTERRUPTED = "resnet18-s1"  # the third classifier: killed after its first of two epochs


def tiny_args(out: Path, *extra: str) -> list[str]:
    return ["reproduce", "--scale", "tiny", "--data", "sample", "--out", str(out), "--quiet",
            *extra]


def run_cli(argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()


def progress(out: Path) -> dict:
    return json.loads((out / "progress.json").read_text())


def mtimes(paths: list[Path]) -> list[int]:
    return [p.stat().st_mtime_ns for p in paths]


@pytest.fixture(scope="module")
def run(tmp_path_factory, session_cache) -> SimpleNamespace:
    """One tiny reproduction, interrupted in the third classifier's run, then resumed."""
    out = tmp_path_factory.mktemp("reproduce") / "run"
    real_train = phases.train_classifier

    def interrupt(row):  # Ctrl-C after the first epoch's checkpoint
        raise KeyboardInterrupt

    def killed_mid_run(config, resume=False, quiet=None):
        if Path(config.out).name == INTERRUPTED:
            real_train(config, resume=resume, quiet=quiet, on_epoch_end=interrupt)
        return real_train(config, resume=resume, quiet=quiet)

    # a budget that takes the planning path but that no loaded machine can make cap the epochs
    argv = tiny_args(out, "--classifier-epochs", "2", "--budget-minutes", "1440")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VEIL_CACHE", str(session_cache))
        env.delenv("VEIL_DATA", raising=False)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(phases, "train_classifier", killed_mid_run)
            first_code, _ = run_cli(argv)
        after_kill = progress(out)
        finished = [out / "classifiers" / s / "model.pt" for s in SLOTS[:2]]
        finished_mtimes = mtimes(finished)
        interrupted_dir = out / "classifiers" / INTERRUPTED
        kill_state = {"last": (interrupted_dir / "last.pt").exists(),
                      "model": (interrupted_dir / "model.pt").exists()}
        code, stdout = run_cli([*argv, "--resume"])
    # tests read this snapshot, not the folder, where they may depend on test order
    # (test_deleted_last_outputs_are_rebuilt_alone runs the command once more)
    after_resume = progress(out)
    return SimpleNamespace(out=out, first_code=first_code, after_kill=after_kill,
                           kill_state=kill_state, finished=finished,
                           finished_mtimes=finished_mtimes, code=code, stdout=stdout,
                           after_resume=after_resume)


@pytest.mark.slow
def test_interrupted_run_keeps_its_finished_phases(run):
    assert run.first_code == 130
    phases = run.after_kill["phases"]
    assert [phases[f"classifier:{s}"]["status"] for s in SLOTS[:3]] == ["done", "done",
                                                                         "running"]
    assert f"classifier:{SLOTS[3]}" not in phases
    assert phases[f"classifier:{INTERRUPTED}"]["config"]["epochs"] == 2
    assert run.kill_state == {"last": True, "model": False}


@pytest.mark.slow
def test_resume_skips_finished_phases_and_continues_the_unfinished_run(run):
    assert run.code == 0
    for slot in SLOTS[:2]:
        assert f"classifier:{slot}: done earlier, skipped" in run.stdout
    assert mtimes(run.finished) == run.finished_mtimes  # not retrained
    rows = [json.loads(line) for line in
            (run.out / "classifiers" / INTERRUPTED / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # epoch 1 kept, epoch 2 trained on resume
    record = run.after_resume["phases"][f"classifier:{INTERRUPTED}"]
    assert record["status"] == "done" and record["result"]["resumed"] is True
    assert len(run.after_resume["invocations"]) == 2


@pytest.mark.slow
def test_every_phase_writes_its_run_folder(run):
    phases = run.after_resume["phases"]
    assert set(phases) == {p.name for p in build_phases(TINY_SLOTS)}
    assert all(p["status"] == "done" for p in phases.values())
    for kind in ("classifiers", "obfuscators"):
        for slot in SLOTS:
            folder = run.out / kind / slot
            for name in ("model.pt", "last.pt", "metrics.jsonl", "config.yaml"):
                assert (folder / name).is_file(), folder / name
    plan = phases["classifier:vgg19"]["result"]["plan"]
    assert plan["images_per_s"] > 0 and plan["budget_s"] > 0  # the budget path was taken


@pytest.mark.slow
def test_every_obfuscator_follows_the_scales_staged_recipe(run):
    tiny = SCALES["tiny"]
    for slot in SLOTS:
        folder = run.out / "obfuscators" / slot
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["recipe"] == "staged" == tiny.obfuscator_recipe
        assert config["warm_start"] == dict(tiny.obfuscator_warm_start) == {"encoder": 1.0}
        assert config["batch_size"] == tiny.obfuscator_batch and config["feature_weight"] > 0
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert rows[0]["epoch"] == 0 and "encoder_loss" in rows[0]  # the warm start ran first
        assert rows[-1]["epoch"] >= 1


def test_the_paper_scale_plans_a_staged_obfuscator_with_its_warm_start():
    paper = SCALES["paper"]
    assert paper.obfuscator_recipe == "staged" and dict(paper.obfuscator_warm_start) == {
        "encoder": 2.0}
    ctx = fake_context(paper, 50_000, 10_000)
    phase = next(p for p in build_phases(paper.slots) if p.kind == "obfuscator")
    weight = rep.phase_weight(ctx, phase)
    without = rep.phase_weight(fake_context(replace(paper, obfuscator_warm_start=()), 50_000,
                                            10_000), phase)
    speed = guessed_speed(phase.slot.model, True)
    assert weight - without == pytest.approx(2.0 * 0.25 * 50_000 / speed)  # encoder: 1/4 step


@pytest.mark.slow
def test_tables_are_complete(run):
    tables = json.loads((run.out / "tables.json").read_text())
    assert tables["schema"] == "veil.eval.tables/1"
    assert [c["label"] for c in tables["classifiers"]] == SLOTS
    assert [c["model_name"] for c in tables["classifiers"]] == [s.model for s in TINY_SLOTS]
    assert [r["classifier"] for r in tables["table1"]] == SLOTS
    for row in tables["table1"]:
        assert {"plain_acc", "obfuscated_acc", "flops_overhead_pct",
                "params_overhead_pct"} <= set(row)
    assert len(tables["table2"]) == 5
    t3 = tables["table3"]
    assert t3["classifiers"] == SLOTS and len(t3["obfuscators"]) == 5
    assert len(t3["accuracy"]) == 5 and all(len(row) == 5 for row in t3["accuracy"])
    assert all(0.0 <= a <= 1.0 for row in t3["accuracy"] for a in row)
    assert t3["trained_for"] == list(range(5))
    md = (run.out / "tables.md").read_text()
    for heading in ("## Table 1", "## Table 2", "## Table 3"):
        assert heading in md


@pytest.mark.slow
def test_attacks_and_figures(run):
    attacks = json.loads((run.out / "attacks.json").read_text())
    assert attacks["schema"] == "veil.attacks/1"
    assert len(attacks["defenses"]) == 5
    for d in attacks["defenses"]:
        assert set(d["attacks"]) == {"cotrained", "decoder"}
        assert 0 <= d["attacks"]["decoder"]["ssim"]["mean"] <= 1
        assert d["accuracy"] is not None
    assert "## Summary" in (run.out / "attacks.md").read_text()
    pngs = sorted(run.out.glob("*.png"))
    assert len([p for p in pngs if p.name.startswith("table2-")]) == 5
    assert len([p for p in pngs if p.name.startswith("attack-")]) == 5
    assert (run.out / "tradeoff.png") in pngs
    for png in pngs:
        with Image.open(png) as im:
            im.verify()
    summary = (run.out / "reproduce.md").read_text()
    assert "tables.md" in summary and "attack:googlenet" in summary


@pytest.mark.slow
def test_deleted_last_outputs_are_rebuilt_alone(run):
    tables_mtime = mtimes([run.out / "tables.json"])
    (run.out / "attacks.json").unlink()
    code, stdout = run_cli(tiny_args(run.out, "--resume"))
    assert code == 0
    assert (run.out / "attacks.json").is_file()
    assert stdout.count("done earlier, skipped") == len(build_phases(TINY_SLOTS)) - 1
    assert mtimes([run.out / "tables.json"]) == tables_mtime
    assert main(["report", str(run.out)]) == 0  # results re-render from their JSON


@pytest.mark.slow
def test_refuses_to_overwrite_or_mix_runs(run, capsys):
    assert main(tiny_args(run.out)) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["reproduce", "--scale", "paper", "--data", "sample", "--device", "cpu",
                 "--out", str(run.out), "--resume"]) == 2
    assert "--scale" in capsys.readouterr().err


def test_invalidation_follows_dependencies():
    phases = build_phases(TINY_SLOTS)
    by_name = {p.name: p for p in phases}
    assert by_name["obfuscator:vgg19"].depends == ("classifier:vgg19",)
    assert set(by_name["report"].depends) == {"tables", *(f"attack:{s}" for s in SLOTS)}
    records = {p.name: {"status": "done"} for p in phases}
    ctx = SimpleNamespace(progress=SimpleNamespace(
        phase=lambda n: records.get(n, {}),
        update=lambda n, **v: records[n].update(v)))
    rep.invalidate_dependents(ctx, phases, "classifier:resnet50")
    stale = {n for n, r in records.items() if r["status"] == "stale"}
    assert stale == {"obfuscator:resnet50", "tables", "attack:resnet50", "report"}


def test_plan_epochs_fits_the_budget():
    assert plan_epochs(20, None, 5.0) == 20
    assert plan_epochs(20, 100.0, 3.0, fixed_s=6.0) == 20  # fits: the default
    assert plan_epochs(20, 30.0, 3.0, fixed_s=3.0) == 8  # (30 * 0.9 - 3) // 3
    assert plan_epochs(20, 1.0, 3.0) == 1  # never below one epoch
    assert plan_epochs(20, 1.0, 3.0, minimum=5) == 5  # nor below the minimum
    assert plan_epochs(3, 1.0, 3.0, minimum=5) == 3  # which the default caps
    assert plan_epochs(20, 30.0, 3.0, fixed_s=3.0, minimum=5) == 8
    with pytest.raises(ValueError):
        plan_epochs(0, 10.0, 1.0)


def test_budget_is_split_over_the_phases_left():
    assert share(100.0, [1, 1, 2]) == pytest.approx(25.0)
    assert share(100.0, [1, 1, 2], index=2) == pytest.approx(100.0)
    assert share(-5.0, [1, 1]) == 0.0
    ticks = iter([0.0, 40.0, 70.0])
    clock = Clock(60.0, now=lambda: next(ticks))
    assert clock.remaining() == pytest.approx(20.0)
    assert clock.remaining() == pytest.approx(-10.0)
    assert Clock(None).remaining() is None


def fake_context(scale: Scale, train: int, test: int) -> rep.Context:
    return rep.Context(scale, Path("unused"), "sample", torch.device("cpu"), "fp32", 0, False,
                       None, True, Clock(None), None, train, test)


def test_paper_defaults_fit_ten_minutes_at_the_guessed_speeds():
    paper = SCALES["paper"]
    assert [(s.model, s.seed) for s in paper.slots] == [
        ("vgg19", 0), ("resnet18", 0), ("resnet18", 1), ("resnet50", 0), ("googlenet", 0)]
    assert [s.name for s in paper.slots] == SLOTS  # the tiny scale keeps the slot names
    ctx = fake_context(paper, 50_000, 10_000)
    total = sum(rep.phase_weight(ctx, p) for p in build_phases(paper.slots))
    assert 5 * 60 < total < 11 * 60  # plus ~40 s to decode the JPEGs once


@pytest.mark.slow
def test_a_small_budget_caps_the_epochs():
    ctx = fake_context(SCALES["tiny"], 512, 64)
    config = clf.make_config("fastnet_tiny", epochs=10_000, batch_size=64, device="cpu",
                             train_subset=512, test_subset=64)
    plan = phases.plan_classifier(ctx, config, budget_s=5.0)
    assert 1 <= plan.epochs < 10_000 and plan.default_epochs == 10_000
    assert plan.images_per_s > 0
    assert phases.plan_classifier(ctx, config, budget_s=None).epochs == 10_000
