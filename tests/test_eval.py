"""`veil evaluate` and `veil report`: metrics, Tables 1-3, result JSON and its Markdown."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from veil.cli import main
from veil.core.checkpoint import save_checkpoint
from veil.core.files import sha256_of
from veil.data import CIFAR10_CLASSES
from veil.metrics import PSNR_CAP_DB, image_scores, psnr, ssim, summarize
from veil.models import create_model
from veil.report.figures import decode_strip, encode_strip, label_points, pareto_front
from veil.report.results import regenerate

DATA = Path(__file__).parent / "data"


# --- tiny checkpoints in the payload formats of veil.train -----------------------------------
def save_classifier(path: Path, seed: int, classes: Sequence[str] = CIFAR10_CLASSES,
                    model_name: str = "fastnet_tiny") -> Path:
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=len(classes))
    save_checkpoint({"kind": "classifier", "model_name": model_name, "num_classes": len(classes),
                     "classes": list(classes), "model": model.state_dict(),
                     "config": {"model": model_name, "seed": seed},
                     "metrics": {"test_acc": 0.1}, "data": {"name": "sample", "sha256": ""}},
                    path)
    return path


def save_obfuscator(path: Path, classifier: Path, lam: float = 1.0, seed: int = 0,
                    classes: Sequence[str] = CIFAR10_CLASSES) -> Path:
    torch.manual_seed(seed)
    obfuscator, deobfuscator = create_model("obfuscator"), create_model("deobfuscator")
    save_checkpoint({"kind": "obfuscator", "obfuscator": obfuscator.state_dict(),
                     "deobfuscator": deobfuscator.state_dict(),
                     "classifier": {"model_name": "fastnet_tiny", "path": str(classifier),
                                    "sha256": sha256_of(classifier), "test_acc": 0.1},
                     "classes": list(classes),
                     "config": {"lam": lam, "recipe": "fast", "epochs": 1, "seed": seed,
                                "train_subset": 64},
                     "metrics": {}}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-checkpoints")
    clf0 = save_classifier(root / "clf-s0.pt", 0)
    clf1 = save_classifier(root / "clf-s1.pt", 1)
    return {"clf0": clf0, "clf1": clf1, "obf0": save_obfuscator(root / "obf0.pt", clf0, 1.0),
            "obf1": save_obfuscator(root / "obf1.pt", clf1, 0.5, seed=1)}


def veil(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


# --- metrics ---------------------------------------------------------------------------------
def test_identical_images_give_infinite_psnr_and_ssim_one():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.isinf(psnr(x, x)).all()
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-6)
    scores = image_scores(x, x)
    assert scores["psnr"]["mean"] == PSNR_CAP_DB and scores["ssim"]["mean"] == pytest.approx(1.0)


@pytest.mark.parametrize("delta", [0.05, 0.1, 0.2])
def test_psnr_of_known_additive_noise(delta):
    generator = torch.Generator().manual_seed(1)
    x = 0.25 + 0.5 * torch.rand(2, 3, 32, 32, generator=generator)
    sign = torch.randint(0, 2, x.shape, generator=generator) * 2 - 1
    # every pixel off by exactly delta: MSE = delta^2, PSNR = -20 log10(delta)
    assert psnr(x, x + delta * sign) == pytest.approx([-20 * math.log10(delta)] * 2, abs=1e-3)
    assert psnr(255 * x, 255 * (x + delta * sign), data_range=255.0) == pytest.approx(
        [-20 * math.log10(delta)] * 2, abs=1e-3)


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004: Gaussian window 11, sigma 1.5, valid filtering, mean over channels."""
    t = np.arange(11) - 5
    g = np.exp(-t**2 / (2 * 1.5**2))
    g /= g.sum()

    def blur(img: np.ndarray) -> np.ndarray:
        rows = np.stack([np.convolve(r, g, mode="valid") for r in img])
        return np.stack([np.convolve(c, g, mode="valid") for c in rows.T]).T

    c1, c2 = 0.01**2, 0.03**2
    values = []
    for ca, cb in zip(a, b, strict=True):
        mu_a, mu_b = blur(ca), blur(cb)
        var_a = blur(ca * ca) - mu_a**2
        var_b = blur(cb * cb) - mu_b**2
        cov = blur(ca * cb) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1)
                                                          * (var_a + var_b + c2))
        values.append(s.mean())
    return float(np.mean(values))


def test_ssim_matches_an_independent_implementation():
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 32, 32, generator=generator, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    got = ssim(x, y)
    for i in range(2):
        assert got[i].item() == pytest.approx(_reference_ssim(x[i].numpy(), y[i].numpy()),
                                              abs=1e-4)


def test_summarize_known_values():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["n"] == 5 and s["mean"] == 3.0 and s["p50"] == 3.0
    assert s["std"] == pytest.approx(math.sqrt(2.5)) and s["min"] == 1.0 and s["max"] == 5.0
    assert s["p25"] == 2.0 and s["p75"] == 4.0 and s["p5"] == pytest.approx(1.2)
    assert summarize([float("inf"), 10.0], cap=100.0)["max"] == 100.0
    assert summarize([7.0])["std"] == 0.0
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([float("inf")])


def test_image_strips_round_trip_losslessly():
    x = torch.randint(0, 256, (4, 3, 32, 32)).float() / 255
    back = decode_strip(encode_strip(x), 4)
    assert back.shape == (4, 32, 32, 3)
    assert np.array_equal(back, (x * 255).round().byte().permute(0, 2, 3, 1).numpy())


def test_pareto_front():
    points = [("a", 0.1, 0.5), ("b", 0.2, 0.9), ("c", 0.3, 0.8), ("d", 0.05, 0.5),
              ("e", 0.4, 0.95)]
    assert pareto_front(points) == ["d", "b", "e"]


# --- veil evaluate ---------------------------------------------------------------------------
TABLES_KEYS = {"schema", "data", "seed", "environment", "device", "attacker_budget",
               "classifiers", "obfuscators", "table1", "table2", "table3"}


@pytest.fixture(scope="module")
def tables_run(checkpoints, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tables")
    code = main(["evaluate", "--classifiers", str(checkpoints["clf0"]), str(checkpoints["clf1"]),
                 "--obfuscators", str(checkpoints["obf0"]), str(checkpoints["obf1"]),
                 "--data", "sample", "--test-subset", "40", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_trade_off_labels_of_clustered_points_do_not_overlap():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    cluster = [("obf-resnet18-s0-lam1", 0.277, 44.6), ("obf-googlenet-lam1", 0.285, 43.1),
               ("obf-resnet50-lam1", 0.285, 42.6), ("obf-resnet18-s1-lam1", 0.293, 43.5),
               ("obf-vgg19-lam1", 0.164, 10.0)]
    ax.scatter([x for _, x, _ in cluster], [y for _, _, y in cluster])
    ax.margins(x=0.12, y=0.08)
    fig.tight_layout()
    boxes = label_points(fig, ax, cluster)
    assert len(boxes) == len(cluster)
    for i, a in enumerate(boxes):
        assert fig.bbox.x0 <= a.x0 and a.x1 <= fig.bbox.x1, "a name is cut off"
        assert not any(a.overlaps(b) for b in boxes[i + 1:])
    plt.close(fig)


@pytest.mark.slow
def test_evaluate_writes_the_tables_json_with_provenance(tables_run, checkpoints):
    result = json.loads((tables_run / "tables.json").read_text())
    assert set(result) == TABLES_KEYS
    assert result["schema"] == "veil.eval.tables/1"
    assert result["data"]["source"] == "sample" and result["data"]["test_images"] == 40
    assert {"torch", "cpu", "python"} <= set(result["environment"])
    assert [c["label"] for c in result["classifiers"]] == ["fastnet_tiny-s0", "fastnet_tiny-s1"]
    assert [c["sha256"] for c in result["classifiers"]] == [
        sha256_of(checkpoints["clf0"]), sha256_of(checkpoints["clf1"])]
    assert result["obfuscators"][1]["lam"] == 0.5
    assert result["obfuscators"][0]["params"] == 324_518


def test_table1_pairs_obfuscators_with_their_classifiers(tables_run):
    result = json.loads((tables_run / "tables.json").read_text())
    rows = result["table1"]
    assert [(r["classifier"], r["obfuscator"]) for r in rows] == [
        ("fastnet_tiny-s0", "obf-fastnet_tiny-s0-lam1"),
        ("fastnet_tiny-s1", "obf-fastnet_tiny-s1-lam0.5")]
    for r in rows:
        assert 0 <= r["plain_acc"] <= 1 and 0 <= r["obfuscated_acc"] <= 1
        assert r["flops_overhead_pct"] == pytest.approx(
            100 * r["obfuscator_macs"] / r["classifier_macs"], abs=0.01)
        assert r["params_overhead_pct"] > 0


def test_table3_is_the_full_transfer_matrix(tables_run):
    t3 = json.loads((tables_run / "tables.json").read_text())["table3"]
    assert len(t3["accuracy"]) == 2 and all(len(row) == 2 for row in t3["accuracy"])
    assert t3["trained_for"] == [0, 1]
    assert len(t3["plain_acc"]) == 2


def test_table2_grid_has_one_image_per_class_and_a_png(tables_run):
    result = json.loads((tables_run / "tables.json").read_text())
    grid = result["table2"][0]["grid"]
    assert set(grid["rows"]) == {"original", "obfuscated", "reconstructed"}
    assert len(grid["indices"]) == len(set(grid["labels"]))
    assert all(decode_strip(s, len(grid["indices"])).shape[1:] == (32, 32, 3)
               for s in grid["rows"].values())
    png = tables_run / "table2-obf-fastnet_tiny-s0-lam1.png"
    from PIL import Image
    with Image.open(png) as im:
        assert im.width >= len(grid["indices"]) * 32 * grid["scale"]
    assert f"]({png.name})" in (tables_run / "tables.md").read_text()


def test_report_regenerates_the_same_markdown(tables_run, tmp_path, capsys):
    shutil.copy(tables_run / "tables.json", tmp_path / "tables.json")
    code, out, _ = veil(["report", tmp_path], capsys)
    assert code == 0 and "tables.md" in out
    assert (tmp_path / "tables.md").read_text() == (tables_run / "tables.md").read_text()
    assert (tmp_path / "table2-obf-fastnet_tiny-s0-lam1.png").exists()


@pytest.mark.parametrize("stem", ["tables", "attacks"])
def test_report_reproduces_the_stored_markdown(stem, tmp_path):
    shutil.copy(DATA / f"{stem}.json", tmp_path / f"{stem}.json")
    written = regenerate(tmp_path)
    assert (tmp_path / f"{stem}.md").read_text() == (DATA / f"{stem}.md").read_text()
    assert all(p.exists() for p in written) and any(p.suffix == ".png" for p in written)


def test_stored_tables_json_has_the_current_schema(tables_run):
    stored = json.loads((DATA / "tables.json").read_text())
    fresh = json.loads((tables_run / "tables.json").read_text())
    assert set(stored) == set(fresh) == TABLES_KEYS
    for key in ("table1", "table2", "classifiers", "obfuscators"):
        assert set(stored[key][0]) == set(fresh[key][0]), key
    assert set(stored["table3"]) == set(fresh["table3"])


def test_evaluate_adds_the_recorded_classifier(checkpoints, tmp_path, capsys):
    code, out, _ = veil(["evaluate", "--obfuscators", checkpoints["obf0"], "--data", "sample",
                         "--test-subset", "10", "--out", tmp_path, "--quiet"], capsys)
    assert code == 0 and "added classifier" in out
    result = json.loads((tmp_path / "tables.json").read_text())
    assert result["table1"][0]["classifier"] == "fastnet_tiny-s0"


# --- bad inputs ------------------------------------------------------------------------------
def test_obfuscator_given_as_classifier_is_a_clear_error(checkpoints, tmp_path, capsys):
    code, _, err = veil(["evaluate", "--classifiers", checkpoints["obf0"], "--data", "sample",
                         "--out", tmp_path], capsys)
    assert code == 2 and "not a classifier" in err
    code, _, err = veil(["evaluate", "--obfuscators", checkpoints["clf0"], "--data", "sample",
                         "--out", tmp_path], capsys)
    assert code == 2 and "not an obfuscator" in err


def test_obfuscator_for_a_missing_classifier_is_a_clear_error(checkpoints, tmp_path, capsys):
    orphan_clf = save_classifier(tmp_path / "gone.pt", 5)
    orphan = save_obfuscator(tmp_path / "orphan.pt", orphan_clf)
    orphan_clf.unlink()
    code, _, err = veil(["evaluate", "--classifiers", checkpoints["clf0"], "--obfuscators",
                         orphan, "--data", "sample", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "not among the classifiers given" in err and "gone.pt" in err


def test_classes_that_differ_from_the_data_are_a_clear_error(tmp_path, capsys):
    clf = save_classifier(tmp_path / "five.pt", 0, classes=CIFAR10_CLASSES[:5])
    code, _, err = veil(["evaluate", "--classifiers", clf, "--data", "sample", "--out",
                         tmp_path / "o"], capsys)
    assert code == 2 and "classes" in err
    clf10 = save_classifier(tmp_path / "ten.pt", 0)
    obf = save_obfuscator(tmp_path / "obf5.pt", clf10, classes=CIFAR10_CLASSES[:5])
    code, _, err = veil(["evaluate", "--classifiers", clf10, "--obfuscators", obf, "--data",
                         "sample", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "obfuscator was trained on classes" in err


def test_the_same_checkpoint_twice_is_a_clear_error(checkpoints, tmp_path, capsys):
    code, _, err = veil(["evaluate", "--classifiers", checkpoints["clf0"], checkpoints["clf0"],
                         "--data", "sample", "--out", tmp_path], capsys)
    assert code == 2 and "same checkpoint" in err


def test_nothing_to_evaluate_and_empty_data_are_clear_errors(checkpoints, tmp_path, capsys):
    code, _, err = veil(["evaluate", "--data", "sample", "--out", tmp_path], capsys)
    assert code == 2 and "--classifiers" in err
    for split in ("train", "test"):
        (tmp_path / "empty" / split / "cat").mkdir(parents=True)
    code, _, err = veil(["evaluate", "--classifiers", checkpoints["clf0"], "--data",
                         tmp_path / "empty", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "empty" in err
    code, _, err = veil(["evaluate", "--classifiers", checkpoints["clf0"], "--data", "sample",
                         "--test-subset", "0", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "--test-subset" in err


def test_report_on_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    code, _, err = veil(["report", tmp_path], capsys)
    assert code == 2 and "no veil result JSON" in err
    (tmp_path / "x.json").write_text(json.dumps({"schema": "veil.unknown/9"}))
    code, _, err = veil(["report", tmp_path / "x.json"], capsys)
    assert code == 2 and "unknown result schema" in err


# --- the offloading gain (issue 43) ---------------------------------------------------------
def test_offloading_gain_arithmetic_and_verdict():
    from veil.eval.tables import offloading_gain
    gain = offloading_gain(0.8360, 0.8654)
    assert gain["offloading_gain_pp"] == -2.94 and gain["offloading_pays"] is False
    assert gain["verdict"].startswith("offloading does not pay: -2.94 points")
    gain = offloading_gain(0.90, 0.80)
    assert gain == {"offloading_gain_pp": 10.0, "offloading_pays": True,
                    "verdict": "offloading pays: +10.00 points over the device alone"}
    assert offloading_gain(0.5, 0.5)["offloading_pays"] is False  # a tie buys nothing


def test_the_device_baseline_is_the_nearest_within_ten_percent():
    from veil.eval.tables import device_baseline_at
    devices = [{"label": "a", "macs": 1_000}, {"label": "b", "macs": 1_080},
               {"label": "c", "macs": 2_000}]
    assert device_baseline_at(1_070, devices)["label"] == "b"
    assert device_baseline_at(950, devices)["label"] == "a"
    assert device_baseline_at(1_250, devices) is None  # b is 13.6 % off, c 60 %


@pytest.mark.slow
def test_evaluate_reports_the_offloading_gain_against_a_device_alone_classifier(
        checkpoints, tmp_path, capsys):
    device = save_classifier(tmp_path / "device.pt", 3, model_name="fastnet_device_a100")
    far = save_classifier(tmp_path / "far.pt", 4, model_name="fastnet_device_a025")
    code, out, err = veil(["evaluate", "--obfuscators", checkpoints["obf0"], "--device-alone",
                           device, far, "--data", "sample", "--out", tmp_path / "ev"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "ev" / "tables.json").read_text())
    row = result["table1"][0]["device_alone"]
    assert row["classifier"] == "fastnet_device_a100-s3"  # 26.0M MACs vs the obfuscator's 26.1M
    expected = round(100 * (result["table1"][0]["obfuscated_acc"] - row["accuracy"]), 2)
    assert row["offloading_gain_pp"] == expected
    assert "offloading gain (pp)" in out and row["verdict"] in out


# --- MS-SSIM, the perceptual metric beside SSIM (issue 42 §1) -------------------------------
def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise():
    from veil.metrics import ms_ssim
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=g)
    assert torch.allclose(ms_ssim(x, x), torch.ones(4))
    noise = torch.randn(x.shape, generator=g)
    light = ms_ssim(x, (x + 0.05 * noise).clamp(0, 1))
    heavy = ms_ssim(x, (x + 0.3 * noise).clamp(0, 1))
    assert (light > heavy + 0.1).all() and (heavy < 0.9).all()


def test_image_scores_carry_ms_ssim_from_32_pixels_up():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    assert image_scores(x, x)["ms_ssim"]["mean"] == pytest.approx(1.0)
    small = torch.rand(3, 3, 16, 16, generator=g)
    assert "ms_ssim" not in image_scores(small, small)


@pytest.mark.slow
def test_the_python_api_writes_what_the_command_writes(checkpoints, tables_run, tmp_path):
    import veil

    evaluation = veil.evaluate(classifiers=[str(checkpoints["clf0"]), str(checkpoints["clf1"])],
                               obfuscators=[str(checkpoints["obf0"]), str(checkpoints["obf1"])],
                               data="sample", test_subset=40, out=str(tmp_path), quiet=True)
    command = json.loads((tables_run / "tables.json").read_text())
    written = json.loads((tmp_path / "tables.json").read_text())
    assert evaluation.files[0] == tmp_path / "tables.json"
    assert evaluation.result["table1"] == command["table1"]  # in memory as on file
    for key in ("table1", "table3", "classifiers", "obfuscators"):
        assert written[key] == command[key], key
    assert (tmp_path / "tables.md").read_text() == (tables_run / "tables.md").read_text()


@pytest.mark.hostile
@pytest.mark.parametrize(("options", "message"), [
    ({}, "give --classifiers and/or --obfuscators checkpoints to evaluate"),
    ({"classifiers": ["a.pt"], "per_class": 0}, "setting per_class = 0: must be at least 1"),
    ({"classifiers": ["a.pt"], "threads": 0}, "setting threads = 0: must be at least 1"),
    ({"classifiers": ["a.pt"], "batch": 3}, "unexpected keyword argument 'batch'"),
])
def test_the_python_api_checks_its_settings_before_loading_anything(options, message):
    import veil

    with pytest.raises((ValueError, TypeError), match=message):
        veil.evaluate(**options)
