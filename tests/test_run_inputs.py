"""One way in for a classifier of any format (`load_classifier(spec)`), and the one restricted
unpickler every file a user hands veil goes through."""

from __future__ import annotations

import pickle

import pytest
import torch

from veil import zoo
from veil.core.unpickling import UnsafePickleError, load_restricted, no_code_unpickling
from veil.models.loading import load_classifier
from veil.serve.cli import load_predictor


class Planted:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_shipped_entry_is_a_classifier_spec():
    model, payload = load_classifier("zoo:default", expected_classes=zoo.card()["classes"])
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), zoo.load("default").classifier(x))
    assert payload["sha256"] == zoo.card()["weights_sha256"]
    assert payload["model_name"] == zoo.card()["classifier"]["model"]
    assert payload["metrics"]["test_acc"] == zoo.card()["metrics"]["plain_acc"]
    assert not model.training


def test_the_server_serves_a_shipped_entry_by_its_spec():
    predictor = load_predictor("zoo:default", 1, "thread")
    assert predictor.classes == zoo.card()["classes"]
    assert predictor.info["sha256"] == zoo.card()["weights_sha256"]
    probs = predictor(torch.zeros(2, 32, 32, 3, dtype=torch.uint8).numpy())
    assert probs.shape == (2, 10) and abs(float(probs.sum()) - 2) < 1e-4


@pytest.mark.parametrize("spec, kwargs, message", [
    ("zoo:nope", {}, "unknown pretrained model 'nope'; available: .*default"),
    ("zoo:default", {"weights": "w.pt"},
     "zoo:default is a shipped entry that holds its own weights"),
    ("zoo:default", {"expected_classes": tuple("abcdefghij")},
     "trained on classes .*airplane.* but the data source has"),
])
def test_a_bad_shipped_entry_spec_says_what_is_wrong(spec, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_classifier(spec, **kwargs)


def test_the_restricted_unpickler_admits_plain_data_and_the_globals_allowed():
    data = {"a": [1, 2.5, "x", b"y"], "b": (None, True)}
    assert load_restricted(pickle.dumps(data)) == data
    with pytest.raises(UnsafePickleError, match=r"refusing to load builtins.print: plain only"):
        load_restricted(pickle.dumps(Planted()), holds="plain only")
    allowed = frozenset({("builtins", "complex")})
    assert load_restricted(pickle.dumps(complex(1, 2)), allowed) == complex(1, 2)


def test_while_torch_export_loads_nothing_that_runs_code_is_unpickled(capsys):
    real = pickle.loads
    with no_code_unpickling():
        assert pickle.loads(pickle.dumps({"shape": [1, 3]})) == {"shape": [1, 3]}
        with pytest.raises(UnsafePickleError, match="builtins.print"):
            pickle.loads(pickle.dumps(Planted()))
    assert pickle.loads is real
    assert "code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("spec, error, message", [
    ("byo_models:small_convnet", ValueError, "serve a factory's classifier as a .pt2 program"),
    ("no/such/model.pt", FileNotFoundError, "no such classifier checkpoint"),
])
def test_the_server_says_which_classifier_specs_it_cannot_serve(spec, error, message):
    with pytest.raises(error, match=message):
        load_predictor(spec, 1, "thread")


def test_result_files_record_paths_that_read_the_same_on_every_machine(tmp_path, monkeypatch):
    from veil.core.files import recorded_path

    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    assert recorded_path(repo / "runs" / "x.pt") == "runs/x.pt"
    assert recorded_path(tmp_path / "shared" / "data.zip") == "../shared/data.zip"
    assert recorded_path("/elsewhere/data.zip") == "/elsewhere/data.zip"  # outside: as given
    assert recorded_path("given/as/typed.zip") == "given/as/typed.zip"
    assert recorded_path("sample") == "sample"
