"""The strong cloud classifiers (issue 49): cloudnet sizes counted exactly, the six-view model
that serves them, and the whitened stem their recipe starts from."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from veil.models import create_model
from veil.models.classifiers import (
    CLOUDNETS,
    ResidualFastBlock,
    ViewAveraged,
    fastnet_backbone,
    fastnet_macs,
)
from veil.models.complexity import count_macs
from veil.train.classifier import make_config, whiten_stem


@pytest.mark.parametrize("name, macs", [("cloudnet_s", 118_147_360),
                                        ("cloudnet_m", 332_527_904),
                                        ("cloudnet_l", 451_967_264)])
def test_cloudnets_cost_what_the_fastnet_formula_says(name, macs):
    stem, widths, convs = CLOUDNETS[name]
    assert count_macs(create_model(name)) == fastnet_macs(stem, *widths, convs_per_block=convs) \
        == macs


def test_the_big_cloud_costs_at_least_15_times_the_obfuscator_as_the_papers_do():
    assert count_macs(create_model("cloudnet_l")) >= 15 * count_macs(create_model("obfuscator"))


def test_a_residual_block_adds_its_two_convolutions_to_what_they_start_from():
    torch.manual_seed(0)
    block = ResidualFastBlock(4, 8).eval()
    x = torch.rand(2, 4, 8, 8)
    with torch.no_grad():
        entry = block.entry(x)
        assert torch.allclose(block(x), entry + block.body(entry))
    assert block(x).shape == (2, 8, 4, 4)
    with pytest.raises(ValueError, match="a fastnet block has 2 or 3 convolutions, got 4"):
        fastnet_backbone(10, (8, 8, 8), convs_per_block=4)


def test_the_six_view_model_costs_six_forward_passes_and_shares_the_weights():
    plain, views = create_model("cloudnet_s"), create_model("cloudnet_s_tta")
    assert isinstance(views, ViewAveraged)
    assert count_macs(views) == 6 * count_macs(plain)
    views.load_state_dict(plain.state_dict())  # the same keys: one checkpoint serves both


@pytest.mark.slow
def test_the_six_views_are_the_image_its_mirror_and_one_pixel_shifts():
    torch.manual_seed(0)
    model = create_model("cloudnet_s_tta").eval()
    x = torch.rand(2, 3, 32, 32)
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [x, padded[..., :32, :32], padded[..., 2:, 2:]]
    base = super(ViewAveraged, model).forward
    with torch.no_grad():
        expected = torch.stack([base(v) for s in shifted for v in (s, s.flip(3))]).mean(0)
        assert torch.allclose(model(x), expected, atol=1e-6)
        flat = torch.full((1, 3, 32, 32), 0.3)  # every view of a flat image is the same
        assert torch.allclose(model(flat), base(flat), atol=1e-6)


def test_a_whitened_stem_decorrelates_the_patches_it_was_fitted_on():
    torch.manual_seed(0)
    smooth = nn.functional.avg_pool2d(torch.rand(64, 3, 34, 34), 3, 1)  # correlated pixels
    stem = nn.Conv2d(3, 24, 2)
    whiten_stem(stem, smooth, eps=0.0)
    out = nn.functional.conv2d(smooth.double(), stem.weight.double())[:, :12]
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = torch.cov(flat.T)
    assert torch.allclose(covariance, torch.eye(12, dtype=torch.float64), atol=1e-3)
    assert torch.equal(stem.weight[12:], -stem.weight[:12])  # each filter and its negative
    assert not stem.weight.requires_grad and stem.bias.requires_grad


def test_a_stem_of_the_wrong_shape_cannot_be_whitened():
    with pytest.raises(ValueError, match="a whitened stem needs 24 outputs of 2x2, got 16"):
        whiten_stem(nn.Conv2d(3, 16, 2), torch.rand(4, 3, 8, 8))


def test_the_cloudnet_recipe_whitens_and_tests_six_views_by_default():
    config = make_config("cloudnet_m")
    assert config.whiten and config.view_averaged_eval and config.crop_padding == 2
    assert not make_config("fastnet").whiten
    assert make_config("cloudnet_l").cutout == 8 and make_config("cloudnet_m").cutout == 0


@pytest.mark.slow
def test_a_whitened_run_trains_the_stem_bias_only_and_reports_six_views(tmp_path):
    from veil.train.classifier import train_classifier

    config = make_config("fastnet_tiny", data="sample", out=str(tmp_path / "run"), epochs=2,
                         batch_size=50, whiten=True, view_averaged_eval=True, threads=1)
    row = train_classifier(config, quiet=True)
    assert 0 <= row["test_acc_views"] <= 1
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]
    stem = state["backbone.0.weight"]
    # the whitening is kept through training: each filter still exactly its pair's negative
    assert stem.shape == (24, 3, 2, 2) and torch.equal(stem[12:], -stem[:12])
