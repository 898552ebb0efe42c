"""The paper's obfuscator, the classifier zoo, the registry, freezing and the complexity counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from veil.models import (
    PAPER_CLASSIFIERS,
    FrozenClassifier,
    Obfuscator,
    create_model,
    list_models,
    model_kind,
)
from veil.models.complexity import (
    PAPER_OVERHEAD,
    count_macs,
    count_params,
    model_complexity,
    models_report,
)

PAPER_PARAMS = 324_518
PAPER_MACS = 2.6e7


def test_obfuscator_has_the_papers_parameter_count():
    assert count_params(Obfuscator()) == PAPER_PARAMS


def test_obfuscator_macs_close_to_the_paper():
    macs = count_macs(Obfuscator())
    assert macs == 26_081_280
    assert abs(macs - PAPER_MACS) / PAPER_MACS < 0.05


def test_count_macs_of_a_linear_layer_and_keeps_training_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    assert count_macs(model) == 3 * 32 * 32 * 10
    assert model.training


def test_obfuscator_output_is_an_image_in_unit_range():
    torch.manual_seed(0)
    model = Obfuscator().eval()
    with torch.no_grad():
        y = model(torch.rand(2, 3, 32, 32))
    assert y.shape == (2, 3, 32, 32)
    assert y.min() >= 0 and y.max() <= 1


def test_deobfuscator_has_the_obfuscators_architecture():
    obf, deobf = create_model("obfuscator"), create_model("deobfuscator")
    assert type(obf) is type(deobf)
    assert {k: v.shape for k, v in obf.state_dict().items()} == \
        {k: v.shape for k, v in deobf.state_dict().items()}


@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 1, 32, 32), (2, 3, 30, 32)])
def test_obfuscator_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, H, W\)"):
        Obfuscator()(torch.zeros(shape))


def test_every_obfuscator_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = Obfuscator()
    model(torch.rand(2, 3, 32, 32)).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_initialisation_is_deterministic_under_manual_seed():
    torch.manual_seed(123)
    a = Obfuscator().state_dict()
    torch.manual_seed(123)
    b = Obfuscator().state_dict()
    torch.manual_seed(124)
    c = Obfuscator().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_overhead_matches_the_paper_within_0_3_pp():
    rows = {r["classifier"]: r for r in models_report()["overhead"]}
    assert set(rows) == set(PAPER_CLASSIFIERS) == set(PAPER_OVERHEAD)
    for name, (paper_flops, paper_params) in PAPER_OVERHEAD.items():
        row = rows[name]
        assert row["paper_flops_overhead_pct"] == paper_flops
        assert abs(row["flops_overhead_pct"] - paper_flops) <= 0.3, name
        assert abs(row["params_overhead_pct"] - paper_params) <= 0.3, name
        assert abs(row["flops_diff_pp"]) <= 0.3 and abs(row["params_diff_pp"]) <= 0.3


def test_meta_device_counts_match_real_models():
    real = create_model("fastnet_tiny")
    meta = model_complexity("fastnet_tiny")
    assert (meta.params, meta.macs) == (count_params(real), count_macs(real))
    assert meta.kind == "classifier"


@pytest.mark.parametrize("name", list_models("classifier"))
def test_classifier_output_shape(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["fastnet_tiny", "resnet9_tiny"])
def test_num_classes(name):
    with torch.no_grad():
        assert create_model(name, num_classes=7).eval()(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_normalisation_buffers_travel_in_the_state_dict():
    state = create_model("fastnet_tiny").state_dict()
    assert state["normalize.mean"].shape == (1, 3, 1, 1)
    assert state["normalize.std"].shape == (1, 3, 1, 1)
    assert "normalize.mean" not in dict(create_model("fastnet_tiny").named_parameters())


def test_registry_lists_models_by_kind():
    classifiers = list_models("classifier")
    assert set(PAPER_CLASSIFIERS) <= set(classifiers)
    assert list_models("obfuscator") == ["deobfuscator", "obfuscator"]
    assert sorted(classifiers + list_models("obfuscator")) == list_models()
    assert model_kind("vgg19") == "classifier"
    with pytest.raises(ValueError, match="kind must be"):
        list_models("decoder")


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg16'") as err:
        create_model("vgg16")
    assert all(name in str(err.value) for name in list_models())


def test_frozen_classifier_stays_frozen_but_passes_gradients_to_its_input():
    torch.manual_seed(0)
    frozen = FrozenClassifier(create_model("fastnet_tiny"))
    frozen.train()
    assert not frozen.training and not any(m.training for m in frozen.modules())
    assert not any(p.requires_grad for p in frozen.parameters())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    frozen(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in frozen.parameters())


def test_frozen_classifier_keeps_its_batchnorm_statistics():
    frozen = FrozenClassifier(create_model("fastnet_tiny"))
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    frozen.train()
    frozen(torch.rand(4, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())


def test_resnet18_narrow_is_resnet18_at_a_quarter_width():
    # 11,173,962 is the usual CIFAR ResNet-18's count; the narrow one keeps its layout.
    assert count_params(create_model("resnet18")) == 11_173_962
    narrow = create_model("resnet18_narrow")
    assert (count_params(narrow), count_macs(narrow)) == (701_466, 35_046_656)
    convs = [m for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)]
    full = [m for m in create_model("resnet18").modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels * 4, c.out_channels * 4) for c in convs[1:]] == \
        [(c.in_channels, c.out_channels) for c in full[1:]]


# --- the width multiplier α and the device-alone family (issue 43) ---------------------------
def _hand_counted_params(c0: int, c1: int, c2: int, c3: int) -> int:
    """Table 4's layers counted by hand: conv weights (no bias) + BatchNorm's scale and shift."""
    def bottleneck(cin: int, cout: int) -> int:
        hidden = 6 * cin
        return cin * hidden + 2 * hidden + hidden * 9 + 2 * hidden + hidden * cout + 2 * cout
    stem = 3 * c0 * 9 + 2 * c0
    encoder = bottleneck(c0, c1) + bottleneck(c1, c2) + bottleneck(c2, c3)
    decoder = bottleneck(c3, c2) + bottleneck(c2, c1) + bottleneck(c1, 3)
    return stem + encoder + decoder


@pytest.mark.parametrize("width, channels, macs", [
    (1.0, (32, 32, 64, 128), 26_081_280),
    (0.5, (16, 16, 32, 64), 7_732_224),
    (0.25, (8, 8, 16, 32), 2_539_008)])
def test_width_multiplier_scales_the_obfuscator_as_counted(width, channels, macs):
    model = Obfuscator(width)
    assert count_params(model) == _hand_counted_params(*channels)
    assert count_macs(model) == macs
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    assert create_model("obfuscator", width=width).width == width


def test_width_one_is_exactly_the_papers_obfuscator():
    assert _hand_counted_params(32, 32, 64, 128) == PAPER_PARAMS
    assert count_params(Obfuscator(1.0)) == PAPER_PARAMS


@pytest.mark.parametrize("width", [0, -0.5, 5, float("nan"), "half"])
def test_bad_width_multipliers_are_clear_errors(width):
    with pytest.raises(ValueError, match="width multiplier must be in"):
        Obfuscator(width)


def test_device_fastnets_cost_what_the_obfuscator_costs_at_their_width():
    from veil.models.classifiers import DEVICE_FASTNETS, fastnet_widths_for
    for name, (width, widths) in DEVICE_FASTNETS.items():
        device_macs = model_complexity(name).macs
        obfuscator_macs = count_macs(Obfuscator(width))
        assert abs(device_macs / obfuscator_macs - 1) <= 0.10, name
        assert fastnet_widths_for(obfuscator_macs) == widths  # the rule still picks them
        assert model_kind(name) == "classifier"
        assert create_model(name)(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_the_whitened_device_fastnet_costs_the_obfuscator_with_a_stem_of_24():
    from veil.models.classifiers import WHITENED_DEVICE_FASTNETS, fastnet_widths_for
    for name, (width, widths) in WHITENED_DEVICE_FASTNETS.items():
        obfuscator_macs = count_macs(Obfuscator(width))
        assert widths[0] == 24 and fastnet_widths_for(obfuscator_macs, stem=24) == widths
        assert abs(model_complexity(name).macs / obfuscator_macs - 1) <= 0.10, name


@pytest.mark.parametrize("widths", [(24, 48, 160, 160), (8, 8, 32, 48), (16, 32, 112, 112)])
def test_fastnet_mac_formula_matches_the_counter(widths):
    from veil.models.classifiers import Classifier, fastnet_backbone, fastnet_macs
    stem, *rest = widths
    model = Classifier(fastnet_backbone(10, tuple(rest), stem), 10)
    assert fastnet_macs(*widths) == count_macs(model)


@pytest.mark.parametrize("budget", [2_000_000, 5_000_000, 13_000_000, 40_000_000, 60_000_000])
def test_a_fastnet_sized_to_any_budget_is_within_ten_percent(budget):
    from veil.models.classifiers import fastnet_macs, fastnet_widths_for
    assert abs(fastnet_macs(*fastnet_widths_for(budget)) / budget - 1) <= 0.10


def test_a_budget_below_the_smallest_fastnet_is_a_clear_error():
    from veil.models.classifiers import fastnet_widths_for
    with pytest.raises(ValueError, match="no fastnet costs as little as 1,000 MACs"):
        fastnet_widths_for(1000)


def test_an_obfuscator_checkpoint_rebuilds_at_its_width(tmp_path):
    from veil.core.checkpoint import save_checkpoint
    from veil.models.loading import load_obfuscator_pair
    torch.manual_seed(0)
    narrow = Obfuscator(0.25)
    save_checkpoint({"kind": "obfuscator", "obfuscator": narrow.state_dict(),
                     "deobfuscator": Obfuscator().state_dict(), "config": {"width": 0.25}},
                    tmp_path / "o.pt")
    obfuscator, deobfuscator, _ = load_obfuscator_pair(tmp_path / "o.pt")
    assert obfuscator.width == 0.25 and deobfuscator.width == 1.0  # the attacker keeps its size
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(obfuscator(x), narrow.eval()(x))


@pytest.mark.parametrize("width, message", [(0, "must be above 0"),
                                            (8, "width multiplier must be in")])
def test_an_obfuscator_run_refuses_a_bad_width(width, message):
    from veil.train.obfuscator import make_config
    assert make_config(width=0.5).width == 0.5
    with pytest.raises(ValueError, match=message):
        make_config(width=width)
