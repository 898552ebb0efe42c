"""The fast recipe's pieces: folded frozen classifier, warm starts, feature targets, curves."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from test_train import read_metrics, tiny_classifier_config, tiny_obfuscator_config
from veil.data import TensorLoader, load_dataset
from veil.models import FrozenClassifier, create_model
from veil.models.fold import fold_batchnorm
from veil.models.loading import load_classifier
from veil.train import classifier as clf
from veil.train import obfuscator as obf
from veil.train.losses import feature_distance, utility_loss
from veil.train.warm_start import EncoderClassifier, pretrain_encoder, pretrain_utility


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf")
    clf.train_classifier(tiny_classifier_config(out, epochs=6), quiet=True)
    return out / "model.pt"


def _with_random_statistics(model: nn.Module, negative: bool = False) -> nn.Module:
    """A model whose BatchNorms are not the identity (fresh ones are)."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(-2 if negative else 0.2, 2)
            m.bias.data.uniform_(-1, 1)
    return model.eval()


@pytest.mark.parametrize("name", ["fastnet_tiny", "resnet18", "vgg19", "googlenet"])
def test_folded_classifier_equals_the_unfolded_one(name):
    model = _with_random_statistics(create_model(name))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_a_folded_frozen_classifier_passes_the_unfolded_input_gradients():
    model = _with_random_statistics(create_model("fastnet_tiny")).double()
    folded, plain = FrozenClassifier(model), FrozenClassifier(model, fold=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(3, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    logits = [folded(xs[0]), plain(xs[1])]
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-10, atol=1e-10)
    weights = torch.randn_like(logits[0])
    for out in logits:
        (out * weights).sum().backward()
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-9, atol=1e-12)


def test_batchnorm_behind_a_max_pool_is_kept_when_a_scale_is_negative():
    # fastnet's blocks are conv -> max pool -> BN: folding across the pool is exact only for
    # positive scales, so a negative one must leave that BatchNorm in place.
    model = _with_random_statistics(create_model("fastnet_tiny"), negative=True)
    folded = fold_batchnorm(model)
    assert any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_frozen_classifier_features_are_the_input_of_its_last_linear_layer():
    model = _with_random_statistics(create_model("fastnet_tiny"))
    frozen = FrozenClassifier(model)
    x = torch.rand(4, 3, 32, 32)
    logits, features = frozen.forward_with_features(x)
    head = [m for m in frozen.modules() if isinstance(m, nn.Linear)][-1]
    assert features.shape == (4, head.in_features)
    torch.testing.assert_close(logits, model(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="ends in nn.Linear"):
        FrozenClassifier(nn.Conv2d(3, 10, 1)).forward_with_features(x)


def test_feature_target_gives_gradients_to_the_obfuscator_only():
    torch.manual_seed(0)
    frozen = FrozenClassifier(_with_random_statistics(create_model("fastnet_tiny")))
    obfuscator = create_model("obfuscator")
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with torch.no_grad():
        teacher, teacher_features = frozen.forward_with_features(x)
    logits, features = frozen.forward_with_features(obfuscator(x))
    loss = feature_distance(features, teacher_features)
    assert loss > 0
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in obfuscator.parameters())
    assert all(p.grad is None for p in frozen.parameters())
    # the feature term is what the weight adds, and it is zero on the teacher's own features
    base = utility_loss(logits, y, teacher, 1.0, 4.0)
    both = utility_loss(logits, y, teacher, 1.0, 4.0, features, teacher_features, 2.0)
    torch.testing.assert_close(both - base, 2 * loss.detach(), rtol=1e-4, atol=1e-5)
    assert feature_distance(teacher_features, teacher_features) == 0


def _sample_loader(batch: int = 50) -> tuple[TensorLoader, tuple[str, ...]]:
    ds = load_dataset("sample")
    return TensorLoader(ds.train, batch, shuffle=True, flip=True, seed=0), ds.classes


@pytest.mark.slow
def test_encoder_warm_start_changes_the_encoder_and_only_the_encoder(trained_classifier):
    classifier, _ = load_classifier(trained_classifier)
    loader, classes = _sample_loader()
    torch.manual_seed(0)
    obfuscator = create_model("obfuscator")
    before = {k: v.clone() for k, v in obfuscator.state_dict().items()}
    stats = pretrain_encoder(EncoderClassifier(obfuscator, len(classes)),
                             FrozenClassifier(classifier), loader, steps=8, lr=3e-3)
    after = obfuscator.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("stem.", "encoder.")) for k in changed)
    assert any(k.startswith("stem.") for k in changed)
    assert all(k.endswith("num_batches_tracked") or k in changed for k in before
               if k.startswith(("stem.", "encoder.")) and "running" not in k)
    assert stats["steps"] == 8 and stats["loss"] > 0


@pytest.mark.slow
def test_encoder_warm_start_learns(trained_classifier):
    """Real short run: the encoder's own head fits its training images far above chance."""
    classifier, _ = load_classifier(trained_classifier)
    loader, classes = _sample_loader()
    frozen = FrozenClassifier(classifier)
    runs = {}
    for steps in (4, 60):
        torch.manual_seed(0)
        student = EncoderClassifier(create_model("obfuscator"), len(classes))
        runs[steps] = pretrain_encoder(student, frozen, loader, steps=steps, lr=3e-3,
                                       distill=0.0)
    assert runs[60]["loss"] < 0.7 * runs[4]["loss"]
    assert runs[60]["train_acc"] > 0.4


@pytest.mark.slow
def test_utility_warm_start_trains_the_obfuscator_without_a_deobfuscator(trained_classifier):
    classifier, _ = load_classifier(trained_classifier)
    loader, _ = _sample_loader()
    torch.manual_seed(0)
    obfuscator = create_model("obfuscator")
    frozen = FrozenClassifier(classifier)
    before = {k: v.clone() for k, v in obfuscator.state_dict().items()}
    stats = pretrain_utility(obfuscator, frozen, loader, steps=4, lr=3e-3, feature_weight=1.0)
    after = obfuscator.state_dict()
    assert any(k.startswith("decoder.") and not torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in frozen.parameters())
    assert stats["steps"] == 4


@pytest.mark.slow
def test_staged_recipe_runs_every_stage_and_logs_its_curve(trained_classifier, tmp_path):
    config = tiny_obfuscator_config(trained_classifier, tmp_path / "run", epochs=1,
                                    batch_size=25, warm_start={"encoder": 0.5, "utility": 0.5},
                                    feature_weight=1.0, warm_start_batch_size=25,
                                    curve_every=50, curve_images=50)
    obf.train_obfuscator(config, quiet=True)
    rows = read_metrics(tmp_path / "run")
    assert rows[0]["epoch"] == 0 and {"encoder_loss", "utility_loss"} <= rows[0].keys()
    assert rows[1]["epoch"] == 1 and rows[1]["wall_s"] > rows[0]["wall_s"]
    curve = [json.loads(line) for line in (tmp_path / "run" / "curve.jsonl").read_text()
             .splitlines()]
    assert [r["phase"] for r in curve][0] == "encoder" and curve[-1]["phase"] == "adversarial"
    assert "encoder_acc" in curve[0] and "encoder_acc" not in curve[-1]
    assert all(b["train_s"] > a["train_s"] and b["images"] > a["images"]
               for a, b in zip(curve, curve[1:], strict=False))
    assert all(0 <= r["obfuscated_acc"] <= 1 for r in curve)


def test_staged_recipe_is_registered_with_its_stages():
    c = obf.make_config("staged")
    assert c.warm_start == {"encoder": 8.0} and c.feature_weight > 0
    assert obf.DEFAULT_RECIPE == "staged"
    assert c.batch_size == 32
