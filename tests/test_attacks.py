"""`veil attack`: baselines, the fresh-decoder and inversion attacks, the λ sweep, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from veil.attacks import (
    AttackBudget,
    AttackSetup,
    Defense,
    UNetDecoder,
    invert,
    make_baseline,
    make_decoder,
    reconstruct,
    run_attack_suite,
    total_variation,
    train_fresh_decoder,
)
from veil.attacks.baselines import DEFAULT_BASELINES, expand_names
from veil.attacks.inversion import _objective
from veil.attacks.sweep import train_sweep
from veil.data import Split, load_dataset
from veil.metrics import image_scores, psnr
from veil.models.complexity import count_params

try:
    from tests.test_eval import save_classifier, save_obfuscator, veil
except ImportError:  # run from inside tests/
    from test_eval import save_classifier, save_obfuscator, veil


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    x = load_dataset("sample").test.images[:24]
    return torch.as_tensor(x).permute(0, 3, 1, 2).float() / 255


def is_8bit(x: torch.Tensor) -> bool:
    return bool(torch.allclose(x * 255, (x * 255).round(), atol=1e-4))


# --- baselines -------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [*DEFAULT_BASELINES, "blur:0.8", "downsample:2", "pixelate:8",
                                  "noise:0.05", "random_obfuscator:3"])
def test_baseline_sends_8bit_images_of_the_input_shape(spec, images):
    defense = make_baseline(spec, images)
    sent = defense.transmit(images)
    assert sent.shape == images.shape
    assert sent.min() >= 0 and sent.max() <= 1 and is_8bit(sent)
    assert defense.kind == "baseline" and defense.description


def test_downsampling_pixelation_and_blur_behave_as_named(images):
    pix = make_baseline("pixelate", images).transmit(images)
    assert torch.equal(pix, pix[..., ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3))
    flat = torch.full((1, 3, 32, 32), 0.4)
    for spec in ("blur", "downsample4", "downsample8"):
        assert torch.allclose(make_baseline(spec, images).transform(flat), flat, atol=1e-6)
    psnr8 = psnr(images, make_baseline("downsample8", images).transmit(images)).mean()
    psnr4 = psnr(images, make_baseline("downsample4", images).transmit(images)).mean()
    assert psnr8 < psnr4


def test_noise_is_fresh_on_every_call_and_has_the_given_std(images):
    defense = make_baseline("noise:0.05", images)
    a, b = defense.transmit(images), defense.transmit(images)
    assert not torch.equal(a, b)
    inner = (images > 0.2) & (images < 0.8)  # where clamping does not cut the noise
    assert (a - images)[inner].std().item() == pytest.approx(0.05, abs=0.005)


def test_random_obfuscator_depends_on_its_seed_and_its_input(images):
    a = make_baseline("random_obfuscator", images, seed=0).transmit(images)
    b = make_baseline("random_obfuscator", images, seed=1).transmit(images)
    assert not torch.equal(a, b)
    assert a.std(0).mean() > 0.01  # the output varies with the image


def test_bad_baselines_are_clear_errors(images):
    with pytest.raises(ValueError, match="unknown baseline 'sepia'"):
        make_baseline("sepia", images)
    with pytest.raises(ValueError, match="must be a number"):
        make_baseline("blur:x", images)
    with pytest.raises(ValueError, match="positive whole number"):
        make_baseline("pixelate:2.5", images)
    assert expand_names(["all", "blur"]) == list(DEFAULT_BASELINES)


# --- decoders and attacks --------------------------------------------------------------------
def test_unet_decoder_is_larger_than_the_papers_and_outputs_images(images):
    unet = UNetDecoder(32)
    assert count_params(unet) > 5 * count_params(make_decoder("deobfuscator"))
    out = UNetDecoder(4)(images[:2])
    assert out.shape == (2, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="unknown decoder"):
        make_decoder("transformer")


@pytest.mark.slow
def test_fresh_decoder_improves_reconstruction_of_a_tiny_obfuscator():
    ds = load_dataset("sample")
    crops = ds.train.images[:, 8:24, 8:24].copy()  # 16x16 keeps the CPU run short
    train = Split(crops[:136], ds.train.labels[:136])
    x = torch.as_tensor(crops[-64:]).permute(0, 3, 1, 2).float() / 255
    calibration = torch.as_tensor(train.images).permute(0, 3, 1, 2).float() / 255
    defense = make_baseline("random_obfuscator", calibration)
    sent = defense.transmit_all(x)
    budget = AttackBudget(epochs=8, batch_size=16, lr=1e-2, unet_width=16)
    cpu = torch.device("cpu")
    untrained, _ = train_fresh_decoder(defense, "unet", train,
                                       AttackBudget(epochs=0, unet_width=16), cpu)
    trained, losses = train_fresh_decoder(defense, "unet", train, budget, cpu)
    before = image_scores(x, reconstruct(untrained, sent))["psnr"]["mean"]
    after = image_scores(x, reconstruct(trained, sent))["psnr"]["mean"]
    assert len(losses) == 8 and losses[-1] < 0.8 * losses[0]
    assert after > before + 0.4, (before, after)


def test_total_variation_known_values():
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0.0
    stripes = torch.zeros(1, 1, 4, 4)
    stripes[..., 1::2] = 1.0  # columns alternate 0/1: every horizontal step is 1
    assert total_variation(stripes).item() == pytest.approx(1.0)


def test_inversion_recovers_images_through_an_invertible_transform(images):
    observed = (torch.round(images[:6] * 255) / 255)
    budget = AttackBudget(inversion_steps=150, inversion_restarts=1, inversion_lr=0.1,
                          tv_weight=0.0)
    rebuilt = invert(torch.nn.Identity(), observed, budget)
    assert psnr(images[:6], rebuilt).mean() > 30


def test_inversion_keeps_the_best_start(images):
    blur = make_baseline("blur", images)
    observed = blur.transmit(images[:6])
    one = AttackBudget(inversion_steps=5, inversion_restarts=1)
    three = AttackBudget(inversion_steps=5, inversion_restarts=3)
    with torch.no_grad():
        def objective(x: torch.Tensor) -> torch.Tensor:
            z = torch.logit(x.clamp(1e-6, 1 - 1e-6))
            return _objective(blur.transform, z, observed, one.tv_weight)
        first = objective(invert(blur.transform, observed, one))
        best = objective(invert(blur.transform, observed, three))
    assert (best <= first + 1e-5).all()


# --- the suite, the CLI and its result JSON --------------------------------------------------
ATTACKS_KEYS = {"schema", "data", "seed", "environment", "device", "attacker_budget",
                "reference", "attacks", "classifier", "sweep", "defenses", "pareto"}
DEFENSE_KEYS = {"name", "kind", "description", "noise_std", "accuracy", "eavesdropper",
                "attacks", "strongest", "examples"}


@pytest.fixture(scope="module")
def attack_checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("attack-checkpoints")
    clf = save_classifier(root / "clf.pt", 0)
    other = save_classifier(root / "other.pt", 1)
    return {"clf": clf, "other": other, "obf": save_obfuscator(root / "obf.pt", clf)}


TINY = ["--data", "sample", "--test-subset", "20", "--epochs", "1", "--train-size", "16",
        "--batch-size", "8", "--unet-width", "4", "--inversion-images", "10",
        "--inversion-steps", "3", "--restarts", "2", "--quiet"]


@pytest.mark.slow
def test_attack_cli_writes_results_with_the_budget(attack_checkpoints, tmp_path, capsys):
    code, out, err = veil(["attack", "--obfuscators", attack_checkpoints["obf"], "--baselines",
                           "pixelate", "noise:0.1", "--out", tmp_path, *TINY], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "attacks.json").read_text())
    assert set(result) == ATTACKS_KEYS and result["schema"] == "veil.attacks/1"
    assert result["attacker_budget"]["epochs"] == 1
    assert result["attacker_budget"]["train_images"] == 16
    assert result["attacker_budget"]["inversion_images"] == 10
    assert [d["name"] for d in result["defenses"]] == ["obf-fastnet_tiny-s0-lam1", "pixelate4",
                                                      "noise0.1"]
    obf, pixelate = result["defenses"][0], result["defenses"][1]
    assert set(obf) >= DEFENSE_KEYS
    assert set(obf["attacks"]) == {"cotrained", "decoder", "unet", "inversion"}
    assert set(pixelate["attacks"]) == {"decoder", "unet", "inversion"}  # nothing co-trained
    decoder = obf["attacks"]["decoder"]
    assert decoder["budget"]["epochs"] == 1 and decoder["budget"]["train_images"] == 16
    assert obf["attacks"]["inversion"]["budget"]["restarts"] == 2
    for scores in (obf["eavesdropper"], decoder, obf["attacks"]["inversion"]):
        assert {"mean", "std", "p5", "p50", "p95", "n"} <= set(scores["psnr"])
        assert 0 <= scores["ssim"]["mean"] <= 1
    assert obf["attacks"]["inversion"]["ssim"]["n"] == 10 and decoder["ssim"]["n"] == 20
    assert set(result["pareto"]) <= {d["name"] for d in result["defenses"]}
    assert (tmp_path / "tradeoff.png").exists() and (tmp_path / "attack-pixelate4.png").exists()
    md = (tmp_path / "attacks.md").read_text()
    assert "| pixelate4 | baseline |" in md and "![trade-off](tradeoff.png)" in md


@pytest.mark.slow
def test_attack_cli_until_flat_reports_each_loss_and_writes_the_curves(attack_checkpoints,
                                                                        tmp_path, capsys):
    code, _, err = veil(["attack", "--obfuscators", attack_checkpoints["obf"], "--baselines",
                         "downsample8", "--attacks", "decoder", "unet", "--budget", "full",
                         "--data", "sample", "--test-subset", "20", "--train-size", "100",
                         "--attacker-images", "120", "--attacker-eval-every", "40",
                         "--batch-size", "20", "--unet-width", "4", "--out", tmp_path, "--quiet"],
                        capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "attacks.json").read_text())
    budget = result["attacker_budget"]
    assert budget["until_flat"] and budget["ssim_weights"] == [0.0, 1.0]
    for d in result["defenses"]:
        for name in ("decoder", "unet"):
            a = d["attacks"][name]
            assert [v["loss"] for v in a["variants"]] == ["mse", "mse + 1 (1 - ssim)"]
            assert max(v["ssim"] for v in a["variants"]) == pytest.approx(a["ssim"]["mean"])
            assert a["budget"]["val_images"] == 20 and a["budget"]["train_images"] == 80
            assert all(v["stopped"] == "budget" and v["images"] == 120 for v in a["variants"])
    curves = json.loads((tmp_path / "attacker_curves.json").read_text())
    check_curve_file(curves)
    assert {c["defense"] for c in curves["defenses"]} == {d["name"] for d in result["defenses"]}
    assert "| mse + 1 (1 - ssim) | budget | 120 |" in (tmp_path / "attacks.md").read_text()


@pytest.mark.slow
def test_killed_attack_run_keeps_finished_defenses_and_resumes_after_them(
        attack_checkpoints, tmp_path, capsys, monkeypatch):
    import veil.attacks.suite as suite
    run = ["attack", "--baselines", "pixelate", "blur", "--classifier",
           attack_checkpoints["clf"], "--attacks", "inversion", "--out", tmp_path, *TINY]
    attack_defense, attacked, kill = suite.attack_defense, [], [True]

    def killed_at_blur(defense, setup, log):
        attacked.append(defense.name)
        if defense.name.startswith("blur") and kill[0]:
            raise KeyboardInterrupt
        return attack_defense(defense, setup, log)

    monkeypatch.setattr(suite, "attack_defense", killed_at_blur)
    assert veil(run, capsys)[0] == 130
    partial = json.loads((tmp_path / "attacks.partial.json").read_text())
    assert [r["name"] for r in partial["rows"]] == ["pixelate4"]
    assert not (tmp_path / "attacks.json").exists()

    code, _, err = veil(run, capsys)  # not thrown away by a rerun that forgot --resume
    assert code == 2 and "unfinished attack run (1 defenses done)" in err and "--resume" in err
    code, _, err = veil([*run, "--resume", "--seed", "1"], capsys)
    assert code == 2 and "another seed (0, now 1)" in err

    kill[0] = False
    code, _, err = veil([*run, "--resume"], capsys)
    assert code == 0, err
    assert attacked == ["pixelate4", "blur2", "blur2"]  # the resumed run attacked blur alone
    result = json.loads((tmp_path / "attacks.json").read_text())
    assert [d["name"] for d in result["defenses"]] == ["pixelate4", "blur2"]
    assert result["defenses"][0] == partial["rows"][0]
    assert not (tmp_path / "attacks.partial.json").exists()

    # a defense added to the finished run is the only one attacked
    code, _, err = veil([*run, "--resume", "--baselines", "pixelate", "blur", "noise:0.1"],
                        capsys)
    assert code == 0, err
    assert attacked[3:] == ["noise0.1"]
    result = json.loads((tmp_path / "attacks.json").read_text())
    assert [d["name"] for d in result["defenses"]] == ["pixelate4", "blur2", "noise0.1"]


@pytest.fixture
def finished_attack(attack_checkpoints, tmp_path, capsys):
    """One finished baseline run, written to a folder that did not exist (--out NEWDIR)."""
    out = tmp_path / "new" / "deeper"
    run = ["attack", "--baselines", "pixelate", "--classifier", attack_checkpoints["clf"],
           "--attacks", "inversion", "--out", out, *TINY]
    code, _, err = veil(run, capsys)
    assert code == 0, err
    return out, run


@pytest.mark.slow
@pytest.mark.hostile
def test_a_resumed_row_edited_by_hand_is_refused(finished_attack, capsys):
    out, run = finished_attack
    result = json.loads((out / "attacks.json").read_text())
    row = result["defenses"][0]
    assert len(row["check"]) == 64
    row["attacks"]["inversion"]["ssim"]["mean"] = 0.001  # std and min left as they were
    (out / "attacks.json").write_text(json.dumps(result))
    code, _, err = veil([*run, "--resume"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "the row of 'pixelate4' does not match its check" in err
    partial = {"header": {}, "rows": [row]}
    (out / "attacks.partial.json").write_text(json.dumps(partial))
    code, _, err = veil([*run, "--resume"], capsys)  # from the partial file: settings first
    assert code == 2 and "another budget" in err


@pytest.mark.slow
@pytest.mark.hostile
@pytest.mark.parametrize("key, problem", [
    ("attacks", "has no 'attacks'"), ("strongest", "has no 'strongest'"),
    ("eavesdropper", "has no 'eavesdropper'"), ("accuracy", "has no 'accuracy'"),
    ("examples", "has no 'examples'"),
])
def test_a_resumed_row_missing_a_part_is_refused_even_with_a_recomputed_check(
        finished_attack, capsys, key, problem):
    from veil.attacks import partial

    out, run = finished_attack
    result = json.loads((out / "attacks.json").read_text())
    row = result["defenses"][0]
    del row[key]
    row["check"] = partial.row_check(partial._from_complete(result)["header"], row)
    (out / "attacks.json").write_text(json.dumps(result))
    code, _, err = veil([*run, "--resume"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"cannot resume from {out / 'attacks.json'}: the row of 'pixelate4' {problem}" in err


@pytest.mark.slow
@pytest.mark.hostile
@pytest.mark.parametrize("content, problem", [
    ("[1, 2]", "no header of settings"),
    ('{"rows": []}', "no header of settings"),
    ('{"header": {}, "rows": [{"ssim": 1}]}', "its rows are not a list of named defenses"),
    ('{"header": {}, "rows": {}}', "its rows are not a list of named defenses"),
    ('{"header": ', "Expecting value"),
])
def test_a_malformed_partial_file_is_a_one_line_error(finished_attack, capsys, content,
                                                       problem):
    out, run = finished_attack
    (out / "attacks.partial.json").write_text(content)
    code, _, err = veil([*run, "--resume"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot resume from {out / 'attacks.partial.json'}: {problem}" in err
    assert "delete it to start over" in err


def test_stored_attacks_json_has_the_current_schema():
    stored = json.loads((Path(__file__).parent / "data" / "attacks.json").read_text())
    assert set(stored) == ATTACKS_KEYS
    assert all(set(d) >= DEFENSE_KEYS for d in stored["defenses"])


def test_suite_on_a_baseline_only_with_given_attacks(images):
    ds = load_dataset("sample").subset(16, 12)
    setup = AttackSetup(ds, {"source": "sample"}, None, ["inversion"],
                        AttackBudget(inversion_steps=2, inversion_restarts=1), torch.device("cpu"))
    result = run_attack_suite([make_baseline("downsample8", images)], setup, log=lambda _: None)
    (row,) = result["defenses"]
    assert row["accuracy"] is None and list(row["attacks"]) == ["inversion"]
    assert result["pareto"] == [] and result["reference"]["mean_image"]["psnr"]["n"] == 12
    with pytest.raises(ValueError, match="nothing to attack"):
        run_attack_suite([], setup)


def test_unknown_attack_is_a_clear_error(attack_checkpoints, tmp_path, capsys):
    code, _, err = veil(["attack", "--obfuscators", attack_checkpoints["obf"], "--attacks",
                         "decoder", "telepathy", "--out", tmp_path, *TINY], capsys)
    assert code == 2 and "unknown attack 'telepathy'" in err and "inversion" in err


def test_obfuscator_against_another_classifier_is_a_clear_error(attack_checkpoints, tmp_path,
                                                                capsys):
    code, _, err = veil(["attack", "--obfuscators", attack_checkpoints["obf"], "--classifier",
                         attack_checkpoints["other"], "--out", tmp_path, *TINY], capsys)
    assert code == 2 and "not among the classifiers given" in err


def test_baselines_need_a_classifier_and_a_sweep_needs_one_too(tmp_path, capsys):
    code, _, err = veil(["attack", "--baselines", "blur", "--out", tmp_path, *TINY], capsys)
    assert code == 2 and "--classifier" in err
    code, _, err = veil(["attack", "sweep", "--out", tmp_path, *TINY], capsys)
    assert code == 2 and "--classifier" in err
    code, _, err = veil(["attack", "--out", tmp_path, *TINY], capsys)
    assert code == 2 and "nothing to attack" in err


def test_bad_budget_is_a_clear_error():
    with pytest.raises(ValueError, match="inversion_restarts"):
        AttackBudget(inversion_restarts=0)
    with pytest.raises(ValueError, match="train_size"):
        AttackBudget(train_size=0)


def test_sweep_reuses_finished_runs(attack_checkpoints, tmp_path):
    for lam in (0.1, 2.0):
        (tmp_path / f"lam-{lam:g}").mkdir()
        save_obfuscator(tmp_path / f"lam-{lam:g}" / "model.pt", attack_checkpoints["clf"], lam)
    logs: list[str] = []
    paths, record = train_sweep(attack_checkpoints["clf"], [0.1, 2.0, 0.1], tmp_path,
                                data="sample", log=logs.append)
    assert paths == [tmp_path / "lam-0.1" / "model.pt", tmp_path / "lam-2" / "model.pt"]
    assert record["lams"] == [0.1, 2.0] and all("reusing" in line for line in logs)
    with pytest.raises(ValueError, match="non-negative"):
        train_sweep(attack_checkpoints["clf"], [-1.0], tmp_path)


@pytest.mark.slow
def test_sweep_cli_trains_obfuscators_and_plots_the_tradeoff(tmp_path, capsys):
    from veil.train.classifier import make_config, train_classifier

    train_classifier(make_config("fastnet_tiny", data="sample", out=str(tmp_path / "clf"),
                                 epochs=1, train_subset=32, test_subset=16,
                                 channels_last=False), quiet=True)
    code, _, err = veil(["attack", "sweep", "--classifier", tmp_path / "clf" / "model.pt",
                         "--lams", "0", "1", "--sweep-epochs", "1", "--sweep-train-subset",
                         "16", "--baselines", "downsample8", "--attacks", "decoder",
                         "--out", tmp_path / "out", *TINY], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "out" / "attacks.json").read_text())
    assert result["sweep"]["lams"] == [0.0, 1.0] and result["sweep"]["epochs"] == 1
    names = [d["name"] for d in result["defenses"]]
    assert names == ["sweep-lam0", "sweep-lam1", "downsample8"]
    assert [d["lam"] for d in result["defenses"][:2]] == [0.0, 1.0]
    assert result["pareto"] and (tmp_path / "out" / "tradeoff.png").exists()


def test_defense_transmit_is_deterministic_without_noise(images):
    defense = Defense("id", "baseline", torch.nn.Identity())
    assert torch.equal(defense.transmit(images), defense.transmit(images))
    assert np.isclose(defense.summary()["noise_std"], 0.0)


def until_flat_on_identity(train=None, val=None, **options) -> tuple[torch.nn.Module, dict]:
    """A width-8 U-Net trained until flat against the identity defense on the sample (its
    train split for both roles unless given), 100-image validation steps, batch 50."""
    from veil.attacks.decoders import make_decoder
    from veil.attacks.defenses import Defense
    from veil.attacks.fresh_decoder import train_until_flat

    ds = load_dataset("sample")
    identity = Defense("identity", "baseline", torch.nn.Identity())
    torch.manual_seed(0)
    settings = {"time_budget_s": 1e9, "eval_every": 100, "batch_size": 50, **options}
    return train_until_flat(identity, make_decoder("unet", 8),
                            ds.train if train is None else train, ds.test if val is None else val,
                            torch.device("cpu"), **settings)


@pytest.mark.slow
def test_attacker_trained_until_flat_records_its_curve_and_why_it_stopped():
    decoder, curve = until_flat_on_identity(flat_gain=0.5)
    # with a 0.5 SSIM bar the curve counts as flat as soon as it has four points
    assert curve["stopped"] == "converged" and len(curve["points"]) == 4
    assert [p["images"] for p in curve["points"]] == [100, 200, 300, 400]
    assert curve["points"][-1]["ssim"] > curve["points"][0]["ssim"]
    _, timed = until_flat_on_identity(time_budget_s=0.0)
    assert timed["stopped"] == "budget" and len(timed["points"]) == 1
    _, counted = until_flat_on_identity(max_images=200)
    assert counted["stopped"] == "budget" and counted["images"] == 200


def _points(ssims: list[float], every: int = 1000) -> list[dict[str, float]]:
    return [{"images": every * (i + 1), "train_s": float(i), "ssim": s, "psnr": 10.0}
            for i, s in enumerate(ssims)]


def test_stopping_rule_stops_a_flat_curve_and_lets_a_rising_one_run_to_its_budget():
    from veil.attacks.fresh_decoder import stop_reason

    flat = [0.10, 0.18, 0.22, 0.240, 0.2420, 0.2430, 0.2435, 0.2438]
    rising = [0.02 * (i + 1) for i in range(8)]
    reasons = [stop_reason(_points(flat[:n]), 1000 * n, n, 1e9, 0.005) for n in range(1, 9)]
    # at 6 points (6,000 images) the gain since 4,000 images (a quarter ago) is 0.003 < 0.005
    assert reasons[:5] == [None] * 5 and reasons[5] == "converged"
    assert all(stop_reason(_points(rising[:n]), 1000 * n, n, 1e9, 0.005) is None
               for n in range(1, 9))
    assert stop_reason(_points(rising), 8000, 100.0, 100.0, 0.005) == "budget"
    assert stop_reason(_points(rising[:3]), 3000, 99.0, 100.0, 0.005) is None


CURVE_KEYS = {"decoder", "loss", "stopped", "flat_gain", "images", "train_s", "points"}


def check_curve_file(doc: dict) -> None:
    from veil.attacks.fresh_decoder import CURVE_SCHEMA

    assert doc["schema"] == CURVE_SCHEMA and doc["defenses"]
    for defense in doc["defenses"]:
        assert isinstance(defense["defense"], str) and defense["attackers"]
        for a in defense["attackers"]:
            assert set(a) == CURVE_KEYS and a["stopped"] in ("converged", "budget")
            images = [p["images"] for p in a["points"]]
            assert images == sorted(images) and images[-1] <= a["images"]
            assert all(set(p) == {"images", "train_s", "ssim", "psnr"} and -1 <= p["ssim"] <= 1
                       for p in a["points"])


@pytest.mark.slow
def test_attacker_curve_files_have_the_schema_written_and_committed(tmp_path):
    from veil.attacks.fresh_decoder import attacker_curves

    _, curve = until_flat_on_identity(max_images=300)
    doc = attacker_curves({"identity": [{"decoder": "unet8", "loss": "mse", **curve}]})
    check_curve_file(json.loads(json.dumps(doc)))
    committed = sorted((REPO / "results" / "cpu").rglob("attacker_curves.json"))
    assert len(committed) >= 4
    for path in committed:
        check_curve_file(json.loads(path.read_text()))


@pytest.mark.slow
def test_attackers_train_on_training_pairs_only(monkeypatch):
    """Every image the fresh attacker learns from is a training image (or its mirror image),
    never one of the validation images it is scored on."""
    from veil.attacks import fresh_decoder
    from veil.data import load_dataset

    sample = load_dataset("sample").train
    images, labels = sample.images, sample.labels
    train, val = Split(images[:100], labels[:100]), Split(images[100:150], labels[100:150])
    seen: list[np.ndarray] = []
    real_step = fresh_decoder.decoder_step

    def recording_step(decoder, defense, optimizer, x, ssim_weight=0.0):
        seen.extend((x.permute(0, 2, 3, 1) * 255).round().byte().numpy())
        return real_step(decoder, defense, optimizer, x, ssim_weight)

    monkeypatch.setattr(fresh_decoder, "decoder_step", recording_step)
    until_flat_on_identity(train, val, max_images=200, batch_size=25)
    known = {im.tobytes() for im in train.images} | {im[:, ::-1].tobytes() for im in train.images}
    held_out = {im.tobytes() for im in val.images} | {im[:, ::-1].tobytes() for im in val.images}
    assert len(seen) == 200 and all(im.tobytes() in known for im in seen)
    assert not any(im.tobytes() in held_out for im in seen)
