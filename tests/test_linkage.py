"""Linkage attacks: which photo was sent? Metrics by hand, the two ends (identity, constant), a
matcher that learns, and the family inside `veil attack`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from veil.attacks import AttackBudget, AttackSetup, Defense, make_baseline, run_attack_suite
from veil.attacks.defenses import Population, held_defense
from veil.attacks.linkage import (
    FitBudget,
    HardBatches,
    Matcher,
    MatcherBudget,
    _fit,
    cosine_similarity,
    fitting_linkage,
    gallery_indices,
    jpeg_copies,
    matcher_linkage,
    operator_linkage,
    ranking_metrics,
    reobfuscation_linkage,
    train_matcher,
)
from veil.core.eightbit import quantize_8bit
from veil.core.files import sha256_of
from veil.data import Split, load_dataset, to_tensor_images
from veil.models.loading import load_obfuscator_pair

try:
    from tests.test_eval import save_classifier, veil
except ImportError:  # run from inside tests/
    from test_eval import save_classifier, veil


class Constant(nn.Module):
    """A defense that sends the same grey image whatever the photo."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, 0.5)


@pytest.fixture(scope="module")
def sample():
    ds = load_dataset("sample")
    x = to_tensor_images(ds.test.images, "cpu").float().div_(255)
    return ds, x, torch.as_tensor(ds.test.labels)


def test_ranking_metrics_on_a_hand_made_ranking():
    # query 0: its photo ranks 1st; query 1: 2nd (photo 0 scores higher); query 2: 3rd;
    # query 3: tied with one other at the top (expected rank 1.5, top-1 with chance 1/2)
    similarity = torch.tensor([[0.9, 0.1, 0.2, 0.3],
                               [0.8, 0.5, 0.1, 0.2],
                               [0.7, 0.6, 0.4, 0.1],
                               [0.2, 0.1, 0.9, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    m = ranking_metrics(similarity, labels)
    assert m["gallery"] == 4
    assert m["top1"] == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    assert m["top5"] == pytest.approx(1.0)
    assert m["median_rank"] == pytest.approx((1.5 + 2) / 2)  # ranks 1, 2, 3, 1.5
    # within the class: query 1 (class 0) still loses to photo 0; query 2 (class 1) now ranks
    # first (photos 0 and 1 are of class 0); query 3 stays tied with photo 2
    assert m["class_top1"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert m["chance"] == {"top1": 0.25, "top5": 1.0, "median_rank": 2.5, "class_top1": 0.5}


def test_ranking_metrics_of_identical_queries_are_exactly_chance():
    n = 10
    row = torch.linspace(0, 1, n)
    m = ranking_metrics(row.expand(n, n).clone(), torch.arange(n) % 2)
    assert m["top1"] == pytest.approx(1 / n)
    assert m["top5"] == pytest.approx(5 / n)
    assert m["median_rank"] == pytest.approx((n + 1) / 2)
    assert m["class_top1"] == pytest.approx(m["chance"]["class_top1"]) == pytest.approx(1 / 5)


@pytest.mark.parametrize("shape, labels, message", [
    ((3, 4), 3, "square"), ((4, 4), 3, "expected 4 labels")])
def test_bad_ranking_inputs_are_clear_errors(shape, labels, message):
    with pytest.raises(ValueError, match=message):
        ranking_metrics(torch.zeros(shape), torch.zeros(labels, dtype=torch.long))


def test_gallery_is_class_balanced_seeded_and_capped_by_the_data():
    labels = np.repeat(np.arange(10), 30)
    picked = gallery_indices(labels, 100, seed=0)
    assert len(picked) == 100 and len(set(picked)) == 100
    assert np.bincount(labels[picked], minlength=10).tolist() == [10] * 10
    assert np.array_equal(picked, gallery_indices(labels, 100, seed=0))
    assert not np.array_equal(picked, gallery_indices(labels, 100, seed=1))
    assert len(gallery_indices(labels, 1000, seed=0)) == 300


def test_the_operator_links_the_identity_defense_and_not_a_constant_one(sample):
    _, x, y = sample
    identity = operator_linkage(None, x, x, y)
    assert identity["top1"] == 1.0 and identity["class_top1"] == 1.0
    assert identity["median_rank"] == 1.0
    constant = Defense("constant", "baseline", Constant())
    linked = operator_linkage(None, constant.transmit_all(x), x, y)
    assert linked["top1"] == pytest.approx(1 / len(x))
    assert linked["class_top1"] == pytest.approx(linked["chance"]["class_top1"])


def test_the_operator_uses_the_classifiers_features_and_logits(sample):
    _, x, y = sample
    torch.manual_seed(0)
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16), nn.ReLU(),
                               nn.Linear(16, 10)).eval()
    blurred = make_baseline("blur:1.5", x[:8]).transmit_all(x)
    linked = operator_linkage(classifier, blurred, x, y)
    assert set(linked["variants"]) == {"pixels", "features", "logits"}
    assert linked["variant"] == max(linked["variants"], key=lambda k: linked["variants"][k]["top1"])
    assert linked["top1"] > 10 * linked["chance"]["top1"]  # a blur hides nobody


def test_a_matcher_starts_with_twin_encoders_seeded(sample):
    _, x, _ = sample
    matcher = Matcher(width=8, seed=0).eval()
    with torch.no_grad():
        assert torch.equal(matcher.sent(x[:8]), matcher.photo(x[:8]))
        assert torch.equal(matcher.sent(x[:8]), Matcher(width=8, seed=0).eval().sent(x[:8]))
        assert not torch.equal(matcher.sent(x[:8]), Matcher(width=8, seed=1).eval().sent(x[:8]))


def test_a_matcher_of_a_constant_defense_stays_at_chance(sample):
    ds, x, y = sample
    constant = Defense("constant", "baseline", Constant())
    budget = MatcherBudget(width=8, batch_size=32, max_images=64, eval_every=64, val_images=40)
    linked = matcher_linkage(constant, ds.train, budget, constant.transmit_all(x), x, y,
                             torch.device("cpu"))
    assert linked["top1"] == pytest.approx(1 / len(x))
    assert linked["median_rank"] == pytest.approx((len(x) + 1) / 2, abs=5)  # ties: ± a few
    assert linked["curve"]["stopped"] == "budget"
    assert linked["budget"]["val_images"] == 40 and linked["budget"]["train_images"] == 160


@pytest.mark.slow
def test_a_matcher_learns_to_link_through_a_scrambling_defense():
    """A fixed random pixel permutation plus noise: nothing a human reads, nothing the pixels
    match, but a one-to-one map the matcher learns (validation top-1 far above where it began)."""
    torch.manual_seed(0)
    ds = load_dataset("sample")
    order = torch.randperm(3 * 32 * 32)

    class Scramble(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, order].reshape(x.shape)

    defense = Defense("scramble", "baseline", Scramble())
    train, val = ds.train.subset(160, 0), Split(ds.test.images[:40], ds.test.labels[:40])
    budget = MatcherBudget(width=16, batch_size=32, max_images=1600, eval_every=320,
                           flat_gain=-1.0, crop_padding=0)
    _, curve = train_matcher(defense, train, val, budget, torch.device("cpu"), seed=0)
    first, last = curve["points"][0]["top1"], curve["points"][-1]["top1"]
    assert curve["stopped"] == "budget" and curve["images"] >= 1600
    assert last > first + 0.15 and last > 0.2  # chance: 1 / 40 (seen: 0.025 → 0.35)


def test_hard_batches_draw_from_two_classes_and_are_seeded():
    labels = np.repeat(np.arange(5), 20)
    split = Split(np.zeros((100, 32, 32, 3), np.uint8), labels)
    draws = HardBatches(split, 16, hard_fraction=1.0, seed=3)
    for _ in range(5):
        idx_rng = draws.rng.bit_generator.state
        x = draws.next(torch.device("cpu"), 0)
        assert x.shape == (16, 3, 32, 32)
        assert idx_rng != draws.rng.bit_generator.state


def test_cosine_similarity_is_one_on_the_diagonal_of_equal_sets(sample):
    _, x, _ = sample
    s = cosine_similarity(x[:5], x[:5])
    assert torch.allclose(s.diagonal(), torch.ones(5))


def test_the_suite_reports_linkage_beside_reconstruction():
    ds = load_dataset("sample").subset(64, 40)
    budget = AttackBudget(epochs=1, gallery_size=30, matcher_width=8, batch_size=32)
    setup = AttackSetup(ds, {"source": "sample"}, None, ["link_operator", "link_matcher"],
                        budget, torch.device("cpu"))
    identity = Defense("identity", "baseline", nn.Identity())
    result = run_attack_suite([identity], setup, log=lambda _: None)
    row = result["defenses"][0]
    assert set(row["linkage"]) == {"link_operator", "link_matcher"}
    assert row["linkage"]["link_operator"]["top1"] == 1.0
    assert row["strongest_linkage"]["top1"] == 1.0
    assert row["linkage"]["link_matcher"]["gallery"] == 30
    assert result["attacker_budget"]["gallery_size"] == 30


@pytest.mark.slow
def test_an_attacker_holding_a_population_matches_on_pairs_from_all_of_it():
    ds = load_dataset("sample")
    budget = AttackBudget(epochs=1, gallery_size=30, matcher_width=8, batch_size=32)
    held = [Scale(0.5), Scale(1.0)]
    setup = AttackSetup(ds, {"source": "sample"}, None, ["link_reobfuscate", "link_matcher"],
                        budget, torch.device("cpu"), attacker_obfuscators=held)
    sender = Defense("half", "baseline", Scale(0.5))
    row = run_attack_suite([sender], setup, log=lambda _: None)["defenses"][0]
    reobfuscated = row["linkage"]["link_reobfuscate"]
    assert reobfuscated["top1"] == 1.0 and reobfuscated["variant"] in ("held1-exact",
                                                                        "nearest-exact")
    assert row["linkage"]["link_matcher"]["weights"] == "the attacker's 2 (a population)"
    pairs = held_defense(held)
    assert pairs.name == "attacker's 2" and isinstance(pairs.transform, Population)
    assert held_defense(held[:1]).transform is held[0]


@pytest.mark.slow
def test_attack_cli_names_linkage_and_writes_its_columns(tmp_path, capsys):
    out = tmp_path / "a"
    code, _, err = veil(["attack", "--data", "sample", "--baselines", "blur:1.5",
                         "--classifier", save_classifier(tmp_path / "clf.pt", seed=0),
                         "--attacks", "link_operator", "--gallery-size", "50", "--out", out,
                         "--quiet"], capsys)
    assert code == 0, err
    result = json.loads((out / "attacks.json").read_text())
    linkage = result["defenses"][0]["linkage"]["link_operator"]
    assert linkage["gallery"] == 50
    md = (out / "attacks.md").read_text()
    assert "## Linkage: which photo was sent?" in md and "operator (no training)" in md
    assert (out / "tradeoff_linkage.png").stat().st_size > 0


def test_attack_help_names_the_linkage_family(capsys):
    code, text, _ = veil(["attack", "--help"], capsys)
    assert code == 0
    assert "link_operator" in text and "link_matcher" in text and "--gallery-size" in text
    assert "link_reobfuscate" in text and "--attacker-weights" in text
    assert "link_fit" in text and "--fit-shortlist" in text and "--fit-steps" in text
    code, text, _ = veil(["--help"], capsys)
    assert "linkage" in text


def test_flatness_is_judged_on_the_best_point_so_a_noisy_dip_does_not_stop_a_rising_matcher():
    from veil.attacks.linkage import flat_or_spent

    def points(*top1):
        return [{"images": 1000 * (i + 1), "top1": t} for i, t in enumerate(top1)]

    rising_with_a_dip = points(0.1, 0.3, 0.5, 0.7, 0.5)  # best 0.7 came in the last quarter
    assert flat_or_spent(rising_with_a_dip, 5000, 0.005) is None
    flat = points(0.6, 0.7, 0.69, 0.7, 0.698)  # nothing beat 0.7 since the first quarter
    assert flat_or_spent(flat, 5000, 0.005) == "converged"
    assert flat_or_spent(points(0.1, 0.2, 0.3), 3000, 0.005) is None  # too few points


def test_the_matcher_returned_is_its_best_validation_point(sample):
    ds, x, y = sample
    defense = make_baseline("blur:1.5", x[:8])
    budget = MatcherBudget(width=8, batch_size=32, max_images=192, eval_every=64, val_images=40,
                           flat_gain=-1.0)
    val = Split(ds.test.images[:40], ds.test.labels[:40])
    matcher, curve = train_matcher(defense, ds.train.subset(160, 0), val, budget,
                                   torch.device("cpu"))
    best = max(curve["points"], key=lambda p: p["top1"])
    assert curve["best"] == {"images": best["images"], "top1": best["top1"]}
    val_x = to_tensor_images(val.images, "cpu").float().div_(255)
    again = ranking_metrics(matcher.similarity(defense.transmit_all(val_x), val_x),
                            torch.as_tensor(val.labels))["top1"]
    assert again == pytest.approx(best["top1"])


def test_send_noise_adds_fresh_randomness_per_request_and_keeps_the_clean_defense():
    from veil.attacks.run import with_send_noise

    clean = Defense("obf", "obfuscator", nn.Identity(), "trained obfuscator (8-bit output)")
    defenses = with_send_noise([clean], [0.0, 0.1])
    assert [d.name for d in defenses] == ["obf", "obf+noise0.1"]
    assert defenses[0] is clean and defenses[1].noise == 0.1 and clean.noise == 0.0
    x = torch.full((4, 3, 8, 8), 0.5)
    noisy = defenses[1]
    first, second = noisy.transmit(x), noisy.transmit(x)
    assert not torch.equal(first, second)  # a new draw on every request
    assert 0.07 < (first.float() - 0.5).std().item() < 0.13  # quantize_8bit keeps [0, 1] floats
    assert torch.equal(clean.transmit(x), clean.transmit(x))
    assert noisy.summary()["noise_std"] == 0.1 and "per request" in noisy.description


@pytest.mark.parametrize("stds, message", [
    ([-0.1], "--send-noise takes stds of 0 or more, got -0.1"),
    ([float("nan")], "--send-noise takes stds of 0 or more, got nan"),
    ([0.1, 0.1], "--send-noise lists a std twice"),
])
def test_bad_send_noise_is_a_clear_error(stds, message):
    from veil.attacks.run import with_send_noise

    with pytest.raises(ValueError, match=message):
        with_send_noise([Defense("obf", "obfuscator", nn.Identity())], stds)


# --- re-obfuscation: the weights' holder runs the obfuscator on every candidate photo ----------
@pytest.fixture(scope="module")
def shipped():
    from veil import zoo

    return zoo.load("default").obfuscator.eval(), zoo.load("ensemble").obfuscator.eval()


@pytest.mark.slow
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_reobfuscation_links_every_photo_the_shipped_default_sends(sample, shipped, noise):
    _, x, y = sample
    default, _ = shipped
    sent = Defense("default", "obfuscator", default, noise=noise).transmit_all(x)
    linked = reobfuscation_linkage(default, sent, x, y)
    # exact photos and their JPEG-75 copies alike; noise on what is sent does not hide it
    assert linked["variants"]["exact"]["top1"] == 1.0
    assert linked["variants"]["jpeg75"]["top1"] == 1.0
    assert linked["top1"] == 1.0 and linked["median_rank"] == 1.0


@pytest.mark.slow
def test_a_siblings_weights_link_far_less_than_the_obfuscators_own(sample, shipped):
    _, x, y = sample
    default, sibling = shipped
    sent = Defense("default", "obfuscator", default).transmit_all(x)
    linked = reobfuscation_linkage(sibling, sent, x, y)
    assert linked["top1"] < 0.3  # 0.125 measured among these 200 photos; chance 0.005


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def test_a_population_sends_each_image_through_one_member_drawn_under_its_seed(sample):
    _, x, _ = sample
    members = [Scale(0.25), Scale(0.5), Scale(1.0)]
    y = Population(members, seed=3)(x)
    factors = (y.flatten(1).sum(1) / x.flatten(1).sum(1)).numpy()
    assert np.allclose(np.sort(np.unique(factors.round(4))), [0.25, 0.5, 1.0])  # all used
    assert torch.equal(Population(members, seed=3)(x), y)  # seeded
    assert not torch.equal(Population(members, seed=4)(x), y)
    with pytest.raises(ValueError, match="at least one obfuscator"):
        Population([])


@pytest.mark.slow
def test_re_obfuscating_with_several_held_links_through_the_one_that_sent(sample, shipped):
    _, x, y = sample
    default, sibling = shipped
    sent = Defense("default", "obfuscator", default).transmit_all(x)
    linked = reobfuscation_linkage([sibling, default], sent, x, y)
    assert linked["top1"] == 1.0
    assert linked["variants"]["held2-exact"]["top1"] == 1.0
    assert linked["variants"]["held1-exact"]["top1"] < 0.3
    assert linked["variants"]["nearest-exact"]["top1"] == 1.0  # the sender's distance is 0


def test_reobfuscating_a_constant_defense_scores_exactly_chance(sample):
    _, x, y = sample
    constant = Defense("constant", "baseline", Constant())
    linked = reobfuscation_linkage(Constant(), constant.transmit_all(x), x, y)
    assert linked["top1"] == pytest.approx(1 / len(x))
    assert linked["median_rank"] == pytest.approx((len(x) + 1) / 2)


def test_jpeg_copies_differ_from_the_photos_as_jpeg_75_does(sample):
    _, x, _ = sample
    copies = jpeg_copies(x[:50])
    assert copies.shape == x[:50].shape and copies.dtype == torch.float32
    rmse = (copies - x[:50]).pow(2).mean().sqrt().item() * 255
    assert 3 < rmse < 15  # about 8 on CIFAR-10 (the shared copy's README: RMSE 8.1)


def _shipped_checkpoints(tmp_path):
    from veil.zoo.build import extract_classifier, extract_obfuscator

    classifier = extract_classifier("default", tmp_path / "clf.pt")
    return (classifier, extract_obfuscator("default", tmp_path / "default.pt", classifier),
            extract_obfuscator("ensemble", tmp_path / "ensemble.pt"))


@pytest.mark.slow
def test_attack_cli_reobfuscates_with_the_defenses_or_the_attackers_weights(tmp_path, capsys):
    classifier, default, ensemble = _shipped_checkpoints(tmp_path)
    common = ["attack", "--data", "sample", "--obfuscators", str(default), "--classifier",
              str(classifier), "--attacks", "link_reobfuscate", "--gallery-size", "100",
              "--quiet"]
    code, _, err = veil([*common, "--out", str(tmp_path / "own")], capsys)
    assert code == 0, err
    own = json.loads((tmp_path / "own" / "attacks.json").read_text())
    row = own["defenses"][0]
    assert row["linkage"]["link_reobfuscate"]["top1"] == 1.0
    assert row["strongest_linkage"]["attack"] == "link_reobfuscate"
    assert "re-obfuscation (with the weights)" in (tmp_path / "own" / "attacks.md").read_text()
    code, _, err = veil([*common, "--attacker-weights", str(ensemble),
                         "--out", str(tmp_path / "held")], capsys)
    assert code == 0, err
    held = json.loads((tmp_path / "held" / "attacks.json").read_text())
    assert held["attacker_weights"]["path"] == ensemble.name  # recorded without the folder
    assert held["attacker_weights"]["sha256"] == sha256_of(ensemble)
    assert ("The attacker holds another obfuscator's weights, `ensemble.pt`"
            in (tmp_path / "held" / "attacks.md").read_text())
    assert held["defenses"][0]["linkage"]["link_reobfuscate"]["top1"] < 0.5
    code, _, err = veil([*common, "--attacker-weights", str(ensemble), str(default),
                         "--out", str(tmp_path / "population")], capsys)
    assert code == 0, err
    both = json.loads((tmp_path / "population" / "attacks.json").read_text())
    assert [w["path"] for w in both["attacker_weights"]] == [ensemble.name, default.name]
    assert both["defenses"][0]["linkage"]["link_reobfuscate"]["top1"] == 1.0
    assert ("The attacker holds 2 other obfuscators' weights, a population"
            in (tmp_path / "population" / "attacks.md").read_text())


# --- randomness inside the obfuscator, and the attack that fits it -----------------------------
def _noisy_default(shipped, noise: float):
    from veil.models import create_model

    obfuscator = create_model("obfuscator", noise=noise)
    obfuscator.load_state_dict(shipped[0].state_dict())
    return obfuscator.eval()


def test_a_randomised_obfuscator_sends_differently_each_time_and_a_plain_one_never():
    from veil.models import create_model

    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    noisy, plain = create_model("obfuscator", noise=1.0).eval(), create_model("obfuscator").eval()
    with torch.no_grad():
        assert not torch.equal(noisy(x), noisy(x))
        assert torch.equal(plain(x), plain(x))
        assert torch.equal(plain(x), plain.decode(plain.encode(x)))


@pytest.mark.parametrize("noise", [-0.1, float("nan"), float("inf"), "1"])
def test_bad_bottleneck_noise_is_a_clear_error(noise):
    from veil.models import create_model

    with pytest.raises(ValueError, match="bottleneck noise must be a finite std of 0 or more"):
        create_model("obfuscator", noise=noise)


def test_a_checkpoint_rebuilds_its_obfuscators_noise(tmp_path):
    from veil.core.checkpoint import save_checkpoint
    from veil.models import create_model

    pair = create_model("obfuscator", noise=0.7), create_model("deobfuscator")
    save_checkpoint({"kind": "obfuscator", "obfuscator": pair[0].state_dict(),
                     "deobfuscator": pair[1].state_dict(),
                     "config": {"bottleneck_noise": 0.7}}, tmp_path / "o.pt")
    assert load_obfuscator_pair(tmp_path / "o.pt")[0].noise == 0.7


@pytest.mark.hostile
def test_a_randomised_obfuscator_is_not_exported_deterministic(tmp_path, capsys):
    from veil.core.checkpoint import save_checkpoint
    from veil.models import create_model

    pair = create_model("obfuscator", noise=0.7), create_model("deobfuscator")
    save_checkpoint({"kind": "obfuscator", "obfuscator": pair[0].state_dict(),
                     "deobfuscator": pair[1].state_dict(),
                     "config": {"bottleneck_noise": 0.7}}, tmp_path / "o.pt")
    code, _, err = veil(["export", str(tmp_path / "o.pt"), "--out", str(tmp_path / "o.onnx")],
                        capsys)
    assert code != 0 and "randomised obfuscator (bottleneck noise std 0.7)" in err, err
    assert not (tmp_path / "o.onnx").exists()


def test_fitting_a_deterministic_obfuscator_is_re_obfuscation(sample, shipped):
    _, x, y = sample
    default, _ = shipped
    sent = Defense("default", "obfuscator", default).transmit_all(x[:30])
    linked = fitting_linkage(default, sent, x[:30], y[:30])
    assert linked["fitted"] is False and linked["top1"] == 1.0


@pytest.mark.slow
def test_the_fit_finds_noise_that_explains_the_sent_image_better_than_none(shipped):
    torch.manual_seed(0)
    noisy = _noisy_default(shipped, 2.0)
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        code = noisy.encode(x)
        sent = quantize_8bit(noisy.decode(code, torch.randn_like(code)))
    budget = FitBudget(steps=0)
    at_zero = _fit(noisy, code, sent, budget)
    fitted = _fit(noisy, code, sent, FitBudget(steps=30))
    assert (fitted < 0.5 * at_zero).all()


@pytest.mark.slow
def test_fitting_links_a_randomised_obfuscator_at_least_as_well_as_its_expectation(sample,
                                                                                   shipped):
    _, x, y = sample
    torch.manual_seed(0)
    noisy = _noisy_default(shipped, 2.0)
    sent = Defense("noisy", "obfuscator", noisy).transmit_all(x[:24])
    expectation = reobfuscation_linkage(noisy, sent, x[:24], y[:24])
    assert set(expectation["variants"]) == {"exact-noise-free", "exact-mean16",
                                            "jpeg75-noise-free", "jpeg75-mean16"}
    fitted = fitting_linkage(noisy, sent, x[:24], y[:24], FitBudget(shortlist=4, steps=30))
    assert fitted["fitted"] is True and fitted["budget"]["shortlist"] == 4
    assert fitted["top1"] >= expectation["variants"]["exact-noise-free"]["top1"] - 1e-9
    assert fitted["top1"] > 0.5  # 24 photos: chance 4 %


@pytest.mark.hostile
def test_a_bad_send_noise_is_refused_before_the_data_loads(tmp_path, capsys, monkeypatch):
    import veil.attacks.run as attack_cli

    def never(*_args, **_kwargs):
        raise AssertionError("the data was loaded before the options were checked")

    monkeypatch.setattr(attack_cli, "load_data", never)
    for value, shown in (("-1", "-1.0"), ("-inf", "-inf"), ("nan", "nan")):
        code, _, err = veil(["attack", "--data", "sample", "--baselines", "blur:1.5",
                             "--send-noise", value, "--out", str(tmp_path / "a")], capsys)
        assert code == 2 and f"--send-noise takes stds of 0 or more, got {shown}" in err, err


# --- a derived obfuscator: the parent's holder must not link what it sends ----------------------
def test_the_away_term_is_zero_at_chance_and_pushes_only_the_derived_images():
    from veil.train.obfuscator import away_loss

    sent = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    same = away_loss(sent, sent.detach())  # the parent sends exactly what this one does
    assert same.item() > 0.9 * math.log(16)  # every photo its own nearest: log N above chance
    same.backward()
    assert sent.grad.abs().sum() > 0
    shifted = away_loss(sent, sent.detach().roll(1, 0))  # each nearest to another photo
    assert shifted.item() == 0.0


@pytest.mark.slow
def test_fine_tuning_away_from_the_parent_stops_its_re_obfuscation(sample, tmp_path):
    import veil

    classifier, parent, _ = _shipped_checkpoints(tmp_path)
    _, x, y = sample
    run = veil.train_obfuscator(str(classifier), data="sample", out=tmp_path / "derived",
                                init=str(parent), lam_away=10.0, epochs=10, warm_start={},
                                lr=1e-3, lr_deobfuscator=1e-3, lam_ramp_epochs=0, seed=1,
                                quiet=True)
    sent = Defense("derived", "obfuscator", run.obfuscator).transmit_all(x)
    # 200 photos, chance 0.5 %: the parent links 100 % of its own (tested above); 0.5 % measured
    assert reobfuscation_linkage(load_obfuscator_pair(parent)[0], sent, x, y)["top1"] < 0.1
    assert reobfuscation_linkage(run.obfuscator, sent, x, y)["top1"] == 1.0  # its own weights
    rows = [json.loads(line) for line in (tmp_path / "derived" / "metrics.jsonl").open()]
    assert rows[-1]["loss_link"] < rows[0]["loss_link"]  # the term was logged, and fell


@pytest.mark.hostile
def test_moving_away_needs_a_parent():
    from veil.train.obfuscator import make_config

    with pytest.raises(ValueError, match="setting lam_away = 1: needs the parent to move away"):
        make_config("staged", lam_away=1.0, data="sample", out="o", classifier="c.pt")


@pytest.mark.slow
def test_veil_derive_fine_tunes_away_from_the_shipped_default_with_a_fresh_seed(tmp_path, capsys):
    import yaml

    seeds = []
    for name in ("a", "b"):
        code, out, err = veil(["derive", "--data", "sample", "--out", str(tmp_path / name),
                               "--train-subset", "64", "--quiet"], capsys)
        assert code == 0, err
        assert "keep it and its run folder private" in out
        assert "siblings link each other's sends" in err  # what it does not protect against
        config = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        assert config["lam_away"] == 2.0 and config["init"].endswith("parent/obfuscator.pt")
        assert (tmp_path / name / "model.pt").is_file()
        seeds.append(config["seed"])
    assert seeds[0] != seeds[1]  # drawn from the operating system, one per user
    from veil.pipeline.derive import _draw_seed

    assert _draw_seed(tmp_path / "a", resume=True) == seeds[0]  # --resume keeps the user's seed


@pytest.mark.hostile
@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "0"], "setting epochs = 0: must be at least 1"),
    (["--lam-away", "0"], "setting lam_away = 0.0: must be above 0"),
    ([], "the following arguments are required: --out"),
])
def test_veil_derive_refuses_bad_settings(argv, message, tmp_path, capsys):
    out = [] if not argv else ["--out", str(tmp_path / "d")]
    code, _, err = veil(["derive", "--data", "sample", *out, *argv], capsys)
    assert code == 2 and message in err, err
