"""The shipped zoo: building an entry from trained runs, its card, loading it back."""

from __future__ import annotations

import pytest
import torch

from veil import zoo
from veil.core.checkpoint import save_checkpoint
from veil.data import TensorLoader, load_dataset
from veil.models import create_model
from veil.train import classifier as clf
from veil.train import obfuscator as obf
from veil.train.obfuscator import evaluate_pair
from veil.zoo.build import build


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    clf.train_classifier(clf.make_config("fastnet_tiny", data="sample", out=str(root / "c"),
                                         epochs=1, batch_size=50), quiet=True)
    obf.train_obfuscator(obf.make_config("fast", classifier=str(root / "c" / "model.pt"),
                                         data="sample", out=str(root / "o"), epochs=1,
                                         batch_size=50), quiet=True)
    info = build(root / "c" / "model.pt", root / "o" / "model.pt", "sample", "tiny",
                 out_dir=root / "weights")
    return root / "weights", info


@pytest.mark.slow
def test_card_records_what_a_user_needs(built):
    where, info = built
    assert zoo.list_pretrained(where) == ["tiny"]
    card = zoo.card("tiny", where)
    assert card == info
    m = card["metrics"]
    assert 0 <= m["plain_acc"] <= 1 and 0 <= m["obfuscated_acc_8bit"] <= 1
    assert 0 < m["deobfuscator_psnr_db"] < 60 and -1 <= m["deobfuscator_ssim"] <= 1
    assert card["classifier"]["model"] == "fastnet_tiny"
    assert {"torch", "cpu"} <= set(card["training_environment"])
    assert card["seed"] == {"classifier": 0, "obfuscator": 0}


@pytest.mark.slow
def test_loaded_fp16_weights_reproduce_the_card(built):
    where, info = built
    p = zoo.load("tiny", where=where)
    assert not p.classifier.training and not p.obfuscator.training
    assert all(t.dtype == torch.float32 for t in p.obfuscator.state_dict().values()
               if t.is_floating_point())
    metrics = evaluate_pair(p.obfuscator, p.deobfuscator, p.classifier,
                            TensorLoader(load_dataset("sample").test, 500), torch.device("cpu"))
    assert metrics["obfuscated_acc"] == pytest.approx(info["metrics"]["obfuscated_acc_8bit"])
    assert metrics["plain_acc"] == pytest.approx(info["metrics"]["plain_acc"])


def test_unknown_entry_lists_the_available_ones(built):
    where, _ = built
    with pytest.raises(ValueError, match="available: tiny"):
        zoo.load("nope", where=where)


def test_shipped_default_is_small_and_loads():
    if "default" not in zoo.list_pretrained():
        pytest.fail("the embedded default (src/veil/zoo/weights/default.pt) is not shipped")
    p = zoo.load("default")
    size = zoo.weights_dir().joinpath("default.pt").stat().st_size
    assert size < 5_000_000
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert p.classifier(p.obfuscator(x)).shape == (2, 10)


@pytest.mark.hostile
def test_pretrained_weights_that_do_not_match_their_card_are_refused(built, tmp_path):
    import shutil
    where, _ = built
    copy = tmp_path / "weights"
    shutil.copytree(where, copy)
    data = bytearray((copy / "tiny.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "tiny.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt or were modified"):
        zoo.load("tiny", where=copy)


def test_the_shipped_classifier_extracts_into_a_new_folder_and_classifies_alike(tmp_path):
    from veil.models.loading import load_classifier
    from veil.zoo.build import main

    out = tmp_path / "new" / "deeper" / "default-classifier.pt"
    assert main(["--extract-classifier", str(out)]) == 0
    model, payload = load_classifier(out)
    info = zoo.card("default")
    assert payload["classes"] == info["classes"]
    assert payload["metrics"]["test_acc"] == info["metrics"]["plain_acc"]
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model.eval()(x), zoo.load("default").classifier.eval()(x))


def test_extracting_where_no_file_can_be_written_is_one_line(tmp_path, capsys):
    from veil.zoo.build import main

    (tmp_path / "a-file").write_text("not a folder")
    assert main(["--extract-classifier", str(tmp_path / "a-file" / "c.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("veil.zoo.build: error:"), err


def test_the_shipped_obfuscator_extracts_with_the_classifier_it_was_trained_for(tmp_path):
    from veil.core.files import sha256_of
    from veil.models.loading import ArrayObfuscator
    from veil.zoo.build import main

    classifier, obfuscator = tmp_path / "c.pt", tmp_path / "o" / "o.pt"
    assert main(["--extract-classifier", str(classifier),
                 "--extract-obfuscator", str(obfuscator)]) == 0
    runner = ArrayObfuscator(obfuscator)
    assert runner.payload["classifier"]["sha256"] == sha256_of(classifier)
    assert runner.payload["metrics"] == zoo.card("default")["metrics"]
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = zoo.load("default").obfuscator.eval()(x)
    assert torch.equal(torch.from_numpy(runner(x.numpy())), expected)


def test_an_obfuscator_extracted_beside_a_foreign_classifier_is_refused(tmp_path, capsys):
    from veil.zoo.build import main

    foreign = tmp_path / "foreign.pt"
    save_checkpoint({"kind": "classifier", "model_name": "fastnet_tiny", "num_classes": 10,
                     "classes": zoo.card("default")["classes"],
                     "model": create_model("fastnet_tiny", num_classes=10).state_dict()}, foreign)
    assert main(["--extract-obfuscator", str(tmp_path / "o.pt"), "--classifier",
                 str(foreign)]) == 2
    assert f"{foreign} is not the classifier of the shipped entry 'default'" in \
        capsys.readouterr().err
    assert not (tmp_path / "o.pt").exists()


def test_measured_figures_are_added_to_a_card_with_their_source(built, tmp_path):
    import json
    import shutil

    from veil.zoo.build import main, record_measured
    where = tmp_path / "weights"
    shutil.copytree(built[0], where)
    privacy = {"source": "results/x/attacks.json", "linkage_top1": 0.2}
    info = record_measured("tiny", {"privacy": privacy}, where)
    assert info["measured"]["privacy"] == privacy
    assert zoo.card("tiny", where)["measured"]["privacy"] == privacy
    zoo.load("tiny", where=where)  # the weights' sha256 still matches
    with pytest.raises(ValueError, match="unknown section 'speed'"):
        record_measured("tiny", {"speed": {"source": "x"}}, where)
    with pytest.raises(ValueError, match="'privacy' must name its result file"):
        record_measured("tiny", {"privacy": {"linkage_top1": 0.2}}, where)
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps({"training_cost": {"source": "metrics.jsonl", "cpu_hours": 6}}))
    assert main(["--name", "tiny", "--out", str(where), "--measured", str(notes)]) == 0
    assert set(zoo.card("tiny", where)["measured"]) == {"privacy", "training_cost"}


# --- a cloud classifier alone (issue 49) ---------------------------------------------------------
@pytest.fixture(scope="module")
def cloud_entry(tmp_path_factory):
    from veil.zoo.build import build_classifier

    root = tmp_path_factory.mktemp("cloud")
    clf.train_classifier(clf.make_config("cloudnet_s", data="sample", out=str(root / "c"),
                                         epochs=1, batch_size=100, view_averaged_eval=False),
                         quiet=True)
    info = build_classifier(root / "c" / "model.pt", "sample", "cloud", "cloudnet_s_tta",
                            out_dir=root / "weights")
    return root / "weights", info


@pytest.mark.slow
def test_a_cloud_classifier_entry_says_what_it_costs_and_answers_over_six_views(cloud_entry):
    where, info = cloud_entry
    card = zoo.card("cloud", where)
    assert card == info and card["kind"] == "classifier"
    c = card["classifier"]
    assert (c["model"], c["trained_as"]) == ("cloudnet_s_tta", "cloudnet_s")
    assert c["macs"] == 6 * c["macs_one_view"] == 6 * 118_147_360
    assert c["obfuscator_macs_over_classifier"] == pytest.approx(26_081_280 / c["macs"], abs=1e-4)
    assert 0 <= card["metrics"]["plain_acc"] <= 1 and "plain_acc_one_view" in card["metrics"]
    assert [row["epoch"] for row in c["curve"]] == [1]


@pytest.mark.slow
def test_a_cloud_classifier_entry_loads_as_a_classifier_and_not_as_a_pair(cloud_entry):
    from veil.models.classifiers import ViewAveraged
    from veil.models.pretrained import pretrained_classifier

    where, info = cloud_entry
    model, payload = pretrained_classifier("cloud", where=where)
    assert isinstance(model, ViewAveraged) and payload["sha256"] == info["weights_sha256"]
    loader = TensorLoader(load_dataset("sample").test, 500)
    from veil.batches import accuracy

    assert accuracy(model, loader) == pytest.approx(info["metrics"]["plain_acc"])
    with pytest.raises(ValueError, match="a cloud classifier alone, with no obfuscator"):
        zoo.load("cloud", where=where)


@pytest.mark.slow
def test_the_shipped_cloud_classifier_is_what_its_card_says():
    from veil.models.classifiers import ViewAveraged
    from veil.models.complexity import count_macs
    from veil.models.pretrained import pretrained_classifier

    card = zoo.card("cloudnet_s")
    assert card["kind"] == "classifier" and "cloudnet_s" in zoo.list_pretrained()
    model, payload = pretrained_classifier("cloudnet_s")
    assert isinstance(model, ViewAveraged) and count_macs(model) == card["classifier"]["macs"]
    assert card["metrics"]["plain_acc"] > card["metrics"]["plain_acc_one_view"] > 0.85
    # a sanity bound on the bundled 200-image sample (the card's figure is on the full split)
    x = torch.as_tensor(load_dataset("sample").test.images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        hits = (model(x).argmax(1) == torch.as_tensor(load_dataset("sample").test.labels))
    assert hits.float().mean().item() > 0.8


@pytest.mark.slow
def test_a_cloud_classifier_alone_extracts_as_a_checkpoint_that_serves_the_same(tmp_path):
    from veil.models.loading import load_classifier
    from veil.models.pretrained import pretrained_classifier
    from veil.zoo.build import extract_classifier

    path = extract_classifier("cloudnet_s", tmp_path / "cloud.pt")
    model, payload = load_classifier(path)
    shipped, _ = pretrained_classifier("cloudnet_s")
    assert payload["model_name"] == "cloudnet_s_tta"
    assert payload["zoo_card"] == zoo.card("cloudnet_s")["classifier"]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), shipped(x))
