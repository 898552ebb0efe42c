"""Your own classifier: a module through the Python API, a factory with --weights and a .pt2
program through the CLI; then evaluation, export and serving against what the run recorded."""

from __future__ import annotations

import contextlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import veil
from byo_models import SmallConvNet, efficientnet_b0, small_convnet
from veil.cli import main
from veil.core.checkpoint import load_checkpoint
from veil.core.files import sha256_of
from veil.data import load_dataset
from veil.models.external import export_classifier
from veil.models.loading import load_classifier
from veil.serve.inference import Predictor

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
TINY = dict(epochs=1, batch_size=50, warm_start={"encoder": 0.5}, warm_start_batch_size=50,
            test_subset=100, seed=0)


@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("byo") / "run"
    model = small_convnet()
    result = veil.train_obfuscator(model, data="sample", out=out, mean=MEAN, std=STD,
                                   quiet=True, **TINY)
    return model, result, out


@pytest.mark.slow
def test_api_trains_against_a_plain_module_and_records_it_as_a_program(api_run):
    model, result, out = api_run
    assert not result.obfuscator.training and result.checkpoint == out / "model.pt"
    assert {"plain_acc", "obfuscated_acc", "deobfuscator_ssim"} <= set(result.metrics)
    recorded = load_checkpoint(out / "model.pt")["classifier"]
    assert recorded["path"] == str(out / "classifier.pt2")
    assert recorded["sha256"] == sha256_of(out / "classifier.pt2")
    # the saved program is the module behind its normalisation: same logits on [0, 1] images
    program, payload = load_classifier(out / "classifier.pt2", expected_classes=None)
    x = torch.rand(5, 3, 32, 32)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model.eval()((x - mean) / std))
    assert payload["classes"] == list(load_dataset("sample").classes)


def test_the_classifier_stays_frozen(api_run):
    model, _, _ = api_run
    fresh = small_convnet()
    for (k, v), w in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(v, w), f"training changed the user's classifier: {k}"


@pytest.mark.slow
def test_evaluate_export_and_serve_take_the_recorded_program(api_run, tmp_path):
    _, _, out = api_run
    assert main(["evaluate", "--classifiers", str(out / "classifier.pt2"), "--obfuscators",
                 str(out / "model.pt"), "--data", "sample", "--out", str(tmp_path / "tables"),
                 "--quiet"]) == 0
    tables = json.loads((tmp_path / "tables" / "tables.json").read_text())
    row = tables["table1"][0]  # paired by the recorded sha256, named after the module's class
    assert (row["classifier"], row["obfuscator"]) == ("SmallConvNet", "obf-SmallConvNet-lam1")
    assert row["classifier_macs"] == 1_622_336  # counted through the program: 2 convs

    assert main(["export", str(out / "model.pt"), "--out", str(tmp_path / "o.onnx")]) == 0
    predictor = Predictor.from_checkpoint(out / "classifier.pt2")
    probs = predictor(np.zeros((3, 32, 32, 3), np.uint8))
    assert probs.shape == (3, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert predictor.info["sha256"] == sha256_of(out / "classifier.pt2")


@pytest.mark.slow
def test_cli_factory_with_weights_efficientnet(tmp_path):
    """efficientnet_pytorch's EfficientNet-B0 (a classifier from another library), weights from
    a state-dict file, through `veil train obfuscator --classifier package.module:function`."""
    weights = tmp_path / "effnet.pt"
    torch.manual_seed(1)
    reference = efficientnet_b0()
    torch.save(reference.state_dict(), weights)
    out = tmp_path / "run"
    assert main(["train", "obfuscator", "--classifier", "byo_models:efficientnet_b0",
                 "--set", f"classifier_weights={weights}", "--data", "sample", "--out",
                 str(out), "--epochs", "1", "--batch-size", "50", "--set",
                 "warm_start=encoder:0.25", "--set", "warm_start_batch_size=50", "--set",
                 "train_subset=100", "--set", "test_subset=50", "--quiet"]) == 0
    payload = load_checkpoint(out / "model.pt")
    assert payload["classifier"]["model_name"] == "byo_models:efficientnet_b0"
    assert payload["config"]["classifier_weights"] == str(weights)
    program, _ = load_classifier(out / "classifier.pt2")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(program(x), reference.eval()(x), rtol=1e-4, atol=1e-4)


def cli_error(argv: list[str], capsys) -> str:
    """The one-line error a failing command prints (and that it failed)."""
    assert main(argv) != 0
    return capsys.readouterr().err


@pytest.mark.slow
def test_cli_takes_a_pt2_program_and_needs_feature_weight_0(tmp_path, capsys):
    program = export_classifier(small_convnet(), tmp_path / "mine.pt2",
                                load_dataset("sample").classes, (32, 32), "mine")
    args = ["train", "obfuscator", "--classifier", str(program), "--data", "sample",
            "--epochs", "1", "--batch-size", "50", "--set", "train_subset=100", "--set",
            "test_subset=50", "--quiet", "--set", "warm_start=none"]
    assert "pass --set feature_weight=0" in cli_error([*args, "--out", str(tmp_path / "a")],
                                                      capsys)
    assert main([*args, "--out", str(tmp_path / "b"), "--set", "feature_weight=0"]) == 0
    recorded = load_checkpoint(tmp_path / "b" / "model.pt")["classifier"]
    assert recorded["path"] == str(program) and not (tmp_path / "b" / "classifier.pt2").exists()


class Opaque:
    pass


class Planted:
    """Unpickling this creates a file: the code a hostile file would run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.hostile
def test_a_pt2_with_a_pickled_payload_is_refused_without_running_it(tmp_path, capsys,
                                                                   monkeypatch):
    """torch.export.load falls back to full unpickling for sample inputs: veil never lets it,
    not even for a program the user pinned."""
    import zipfile

    good = export_classifier(small_convnet(), tmp_path / "good.pt2",
                             load_dataset("sample").classes, (32, 32), "good")
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("sample_inputs/model.pt"):
                data = pickle.dumps(Planted(str(marker)))
            dst.writestr(item, data)
    monkeypatch.setenv("VEIL_TRUSTED_PROGRAMS", sha256_of(evil))
    error = cli_error(["train", "obfuscator", "--classifier", str(evil), "--data", "sample",
                       "--out", str(tmp_path / "run"), "--set", "feature_weight=0", "--quiet"],
                      capsys)
    assert "not a torch.export program veil can load safely" in error
    assert not marker.exists(), "the planted pickle ran"
    assert torch.load is not None and load_classifier(good)[1]["classes"]  # guard undone


@pytest.mark.parametrize("spec, extra, message", [
    ("byo_models:seven_classes", [], "gives 7 outputs, but the data has 10 classes"),
    ("byo_models:only_64x64", [], "refuses 32x32 images"),
    ("byo_models:not_a_module", [], "returned a str, not a torch.nn.Module"),
    ("byo_models:missing", [], "has no callable 'missing'"),
    ("no_such_package.models:net", [], "cannot import 'no_such_package.models'"),
    ("byo_models:small_convnet", ["--set", "classifier_mean=0.5,0.5,0.5"],
     "classifier_mean and classifier_std together"),
    ("byo_models:small_convnet", ["--set", "classifier_mean=0.5,0.5,0.5", "--set",
                                  "classifier_std=1,0,1"], "must be positive"),
    ("byo_models:small_convnet", ["--set", "classifier_weights={missing}"], "does not exist"),
    ("byo_models:small_convnet", ["--set", "classifier_weights={pickle}"], "weights_only=True"),
    ("byo_models:small_convnet", ["--set", "classifier_weights={foreign}"],
     "do not fit byo_models:small_convnet: "
     "Error(s) in loading state_dict for SmallConvNet: size mismatch for fc.weight"),
    ("{program}", ["--set", "classifier_weights={foreign}"], "holds its own weights"),
    ("{not_a_program}", [], "refusing to load a torch.export program nobody trusted"),
])
def test_bad_classifiers_are_refused_clearly(tmp_path, capsys, spec, extra, message):
    files = {"missing": tmp_path / "nope.pt", "pickle": tmp_path / "evil.pt",
             "foreign": tmp_path / "foreign.pt", "program": tmp_path / "p.pt2",
             "not_a_program": tmp_path / "bad.pt2"}
    with open(files["pickle"], "wb") as f:
        pickle.dump(Opaque(), f)
    torch.save(SmallConvNet(flat_input=123).state_dict(), files["foreign"])
    export_classifier(small_convnet(), files["program"], load_dataset("sample").classes,
                      (32, 32), "p")
    files["not_a_program"].write_bytes(b"not a zip")
    fill = {k: str(v) for k, v in files.items()}
    argv = ["train", "obfuscator", "--classifier", spec.format(**fill), "--data", "sample",
            "--out", str(tmp_path / "run"), "--epochs", "1", "--quiet",
            *[a.format(**fill) for a in extra]]
    error = cli_error(argv, capsys)
    assert message in error and "Traceback" not in error


def test_api_names_an_unknown_setting(tmp_path):
    with pytest.raises(TypeError, match="unknown setting 'epoch'; settings: .*epochs"):
        veil.train_obfuscator(small_convnet(), data="sample", out=tmp_path / "r", epoch=3)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_api_trains_for_an_ensemble_whose_first_member_is_a_module(api_run, tmp_path):
    _, _, first = api_run
    torch.manual_seed(1)  # another member than the recorded one (the same one is refused)
    result = veil.train_obfuscator([SmallConvNet(), first / "classifier.pt2"], data="sample",
                                   out=tmp_path / "ens", mean=MEAN, std=STD, quiet=True,
                                   ensemble_mode="cycle", feature_weight=0, **TINY)
    recorded = load_checkpoint(result.checkpoint)["classifier"]
    assert [m["path"] for m in recorded["ensemble"]] == [str(first / "classifier.pt2")]
    assert len(result.metrics["members"]) == 2
    with pytest.raises(TypeError, match="only the first classifier of an ensemble may be a "
                                        "module"):
        veil.train_obfuscator([small_convnet(), small_convnet()], data="sample",
                              out=tmp_path / "two")


# --- a .pt2 is code: veil loads only pinned programs (core.trust) -------------------------------
def _with_model_json(program: Path, out: Path, edit) -> Path:
    import zipfile

    with zipfile.ZipFile(program) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("models/model.json"):
                data = edit(data.decode()).encode()
            dst.writestr(item, data)
    return out


def _program_that_runs_code(tmp_path: Path, marker: Path) -> Path:
    """A real program whose stored shape expression creates `marker` when torch evaluates it."""
    good = export_classifier(small_convnet(), tmp_path / "good.pt2",
                             load_dataset("sample").classes, (32, 32), "good")
    symbol = "Symbol('s"

    def plant(text: str) -> str:
        start = text.index('"expr_str": "' + symbol) + len('"expr_str": "')
        end = text.index('"', start)
        expression = text[start:end]
        planted = f"(__import__('pathlib').Path({str(marker)!r}).touch(), {expression})[1]"
        return text[:start] + planted + text[end:]

    return _with_model_json(good, tmp_path / "evil.pt2", plant)


@pytest.mark.hostile
def test_an_untrusted_program_that_runs_code_on_load_is_refused_and_leaves_no_trace(
        tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = _program_that_runs_code(tmp_path, marker)
    error = cli_error(["evaluate", "--classifiers", str(evil), "--data", "sample",
                       "--out", str(tmp_path / "eval"), "--quiet"], capsys)
    assert "refusing to load a torch.export program nobody trusted" in error
    assert f"veil trust {evil}" in error and sha256_of(evil) in error
    assert len(error.strip().splitlines()) == 1 and "Traceback" not in error
    assert not marker.exists()
    with pytest.raises(ValueError, match="nobody trusted"):
        load_classifier(evil)
    assert not marker.exists()


@pytest.mark.hostile
def test_the_crafted_program_really_runs_code_when_torch_loads_it(tmp_path):
    """What the refusal above prevents: torch.export.load evaluates the planted expression."""
    marker = tmp_path / "code-ran"
    evil = _program_that_runs_code(tmp_path, marker)
    with contextlib.suppress(Exception):  # whatever it raises after, the code has run
        torch.export.load(evil)
    assert marker.exists()


@pytest.mark.hostile
def test_torch_never_reads_an_untrusted_program(tmp_path, monkeypatch):
    """Refused before torch parses a byte: no graph it holds (an aten.from_file that maps and
    zeroes files, any operator) and no expression in it can run."""
    import veil.models.external as external

    monkeypatch.setenv("VEIL_CACHE", str(tmp_path / "cache"))  # a trust list of its own

    opened = []
    monkeypatch.setattr(external.torch.export, "load", lambda *a, **k: opened.append(a))
    good = export_classifier(small_convnet(), tmp_path / "good.pt2",
                             load_dataset("sample").classes, (32, 32), "good")
    other = _with_model_json(good, tmp_path / "other.pt2", lambda t: t.replace(
        '"major"', '"major" ', 1))
    with pytest.raises(ValueError, match="nobody trusted"):
        load_classifier(other)
    assert opened == []


def test_a_pinned_program_loads_and_a_changed_one_is_refused_again(tmp_path, capsys,
                                                                   monkeypatch):
    from veil.core.trust import UntrustedProgram

    monkeypatch.setenv("VEIL_CACHE", str(tmp_path / "cache"))  # a trust list of its own

    program = tmp_path / "theirs.pt2"
    # a program veil did not write: a copy under another name, one byte of its metadata changed
    good = export_classifier(small_convnet(), tmp_path / "mine.pt2",
                             load_dataset("sample").classes, (32, 32), "mine")
    _with_model_json(good, program, lambda text: text.replace('"major"', '"major" ', 1))
    with pytest.raises(UntrustedProgram):
        load_classifier(program)
    assert main(["trust", str(program)]) == 0
    assert sha256_of(program) in capsys.readouterr().out
    assert load_classifier(program)[1]["classes"] == list(load_dataset("sample").classes)
    _with_model_json(good, program, lambda text: text.replace('"major"', '"major"  ', 1))
    with pytest.raises(UntrustedProgram):
        load_classifier(program)


@pytest.mark.slow
def test_programs_veil_exported_load_without_asking_and_env_pins_work(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_CACHE", str(tmp_path / "cache"))  # a trust list of its own
    good = export_classifier(small_convnet(), tmp_path / "mine.pt2",
                             load_dataset("sample").classes, (32, 32), "mine")
    assert load_classifier(good)[1]["sha256"] == sha256_of(good)
    other = _with_model_json(good, tmp_path / "other.pt2", lambda t: t.replace(
        '"major"', '"major" ', 1))
    monkeypatch.setenv("VEIL_TRUSTED_PROGRAMS", f"  {sha256_of(other).upper()} , junk")
    assert load_classifier(other)[1]["sha256"] == sha256_of(other)


@pytest.mark.parametrize("argv, message", [
    (["trust"], "name the .pt2 programs to trust, or --list"),
    (["trust", "{dir}/nope.pt2"], "no such program file"),
    (["trust", "{dir}/model.pt"], "only torch.export programs (.pt2) need trust"),
])
def test_bad_trust_requests_are_clear_errors(tmp_path, capsys, argv, message):
    error = cli_error([a.format(dir=tmp_path) for a in argv], capsys)
    assert message in error and len(error.strip().splitlines()) == 1
