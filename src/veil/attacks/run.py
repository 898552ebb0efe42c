"""`veil.attack`: attack frozen obfuscators and baselines, the function behind `veil attack`
(its flags are AttackSettings' fields; the attacker's budget is an AttackBudget)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from ..core.options import EvaluationSettings, apply_runtime
from ..core.runtime import quiet_default
from ..core.settings import one_of, option
from ..data import Dataset, to_tensor_images
from ..report.results import write_result
from ..run_inputs import (
    LoadedClassifier,
    load_classifiers,
    load_data,
    load_obfuscators,
    pair_with_classifiers,
)
from ..train.obfuscator import RECIPES
from .baselines import expand_names, make_baseline
from .budget import AttackBudget, preset
from .defenses import Defense, loaded_defense
from .fresh_decoder import attacker_curves
from .partial import PARTIAL, PartialResult
from .suite import ATTACKS, DEFAULT_ATTACKS, AttackSetup, check_attacks, run_attack_suite
from .sweep import DEFAULT_LAMS, train_sweep

CALIBRATION_IMAGES = 512  # training images for the random obfuscator's BatchNorm statistics


@dataclass(kw_only=True)
class AttackSettings(EvaluationSettings):
    mode: Literal["run", "sweep"] = option(
        "run", "run (default): attack the given defenses; sweep: also train obfuscators for "
               "several λ (--lams) and plot the trade-off against all baselines")
    obfuscators: list[str] = option([], "trained obfuscator checkpoints to attack", metavar="PT")
    send_noise: list[float] = option(
        [0.0], "randomness per request, the linkage lever: each obfuscator is also attacked "
               "with fresh Gaussian noise of this std added to what it sends (before the 8-bit "
               "rule), once per value; 0 = as is (default: 0)", metavar="STD")
    attacker_weights: list[str] = option(
        [], "the obfuscator checkpoints the attacker holds (a sibling's, a derived "
            "obfuscator's parent, or several: a population of siblings): link_reobfuscate and "
            "link_fit run each (and the nearest over all), link_matcher trains on their pairs, "
            "instead of each defense's own weights", metavar="PT")
    classifier: str | None = option(
        None, "the frozen classifier that scores accuracy (default: the one the obfuscators "
              "were trained for)", metavar="PT")
    baselines: list[str] | None = option(
        None, "baseline transforms: downsample4 downsample8 blur[:SIGMA] pixelate[:B] "
              "noise[:STD] random_obfuscator identity (no defense), or 'all' (the default in "
              "sweep mode)", metavar="NAME")
    attacks: list[str] = option(list(DEFAULT_ATTACKS),
                                f"attacks to run (default: all): {', '.join(ATTACKS)}",
                                metavar="NAME")
    out: str = option("results/attacks", "results folder", metavar="DIR")
    resume: bool = option(False, "continue a killed run in --out: the defenses it finished "
                                 f"({PARTIAL}) are reused when the settings are the same")
    budget: AttackBudget = field(default_factory=lambda: preset("quick"))
    lams: list[float] | None = option(
        None, f"λ values (sweep default: {' '.join(f'{v:g}' for v in DEFAULT_LAMS)})",
        metavar="LAM")
    recipe: str = option("fast", "obfuscator recipe of the sweep")
    sweep_epochs: int | None = option(None, "obfuscator training epochs per λ")
    sweep_train_subset: int | None = option(
        None, "obfuscator training images per λ (default: all)", metavar="N")

    def __post_init__(self) -> None:
        super().__post_init__()
        one_of(self, "mode", ("run", "sweep"))
        one_of(self, "recipe", tuple(sorted(RECIPES)))
        check_attacks(self.attacks)
        with_send_noise([], self.send_noise)  # bad stds are refused before the data loads
        if self.swept_lams and not self.classifier:
            raise ValueError("a λ sweep needs --classifier (the frozen classifier to train "
                             "against)")

    @property
    def swept_lams(self) -> list[float]:
        if self.lams is not None:
            return self.lams
        return list(DEFAULT_LAMS) if self.mode == "sweep" else []

    @property
    def baseline_names(self) -> list[str]:
        return expand_names(self.baselines or (["all"] if self.mode == "sweep" else []))


@dataclass
class AttackRun:
    result: dict[str, Any]  # the veil.attacks/1 JSON
    files: list[Path]       # the JSON, its Markdown and figures, attacker_curves.json


def attack(settings: AttackSettings | None = None, **options: Any) -> AttackRun:
    """Every attack of `settings` (or of AttackSettings(**options)) on its defenses, written to
    its `out`; a killed run continues with `resume=True`."""
    s = settings or AttackSettings(**options)
    quiet = True if s.quiet else quiet_default()
    baseline_names = s.baseline_names
    device = apply_runtime(s)
    ds, data_info = load_data(s.data, s.test_subset, s.seed, image_size=s.image_size)
    classifier = load_classifiers([s.classifier], ds.classes, device)[0] if s.classifier \
        else None
    defenses, classifier = _obfuscator_defenses(s.obfuscators, classifier, ds.classes, device)
    defenses = with_send_noise(defenses, s.send_noise)
    calibration = _calibration(ds, device) if baseline_names else None
    baselines = [make_baseline(name, calibration, s.seed) for name in baseline_names]
    if classifier is None and baselines:
        raise ValueError("baselines are scored with a frozen classifier: pass --classifier")
    sweep = None
    if s.swept_lams:
        swept, sweep, classifier = _sweep(s, classifier, ds, device, quiet)
        defenses += swept
    defenses += baselines
    held = load_obfuscators(s.attacker_weights, ds.classes, device)
    setup = AttackSetup(ds, data_info, classifier, check_attacks(s.attacks), s.budget, device,
                        s.seed, quiet, [h.obfuscator for h in held])
    partial = PartialResult.open(s.out, {
        "budget": setup.recorded_budget(), "attacks": setup.attacks, "data": data_info,
        "seed": s.seed, "classifier": classifier.sha256 if classifier else None,
        "attacker_weights": _one_or_list([h.sha256 for h in held])}, s.resume)
    result = run_attack_suite(defenses, setup, sweep, partial=partial)
    if held:
        result["attacker_weights"] = _one_or_list([{"path": h.path, "sha256": h.sha256}
                                                   for h in held])
    files = write_result(result, s.out) + _write_curves(result, s.out)
    partial.close()
    return AttackRun(result, files)


def _one_or_list(items: list[Any]) -> Any:
    """How the attacker's weights are recorded: none, one item as before several were possible
    (so earlier results and resumed runs still match), or the list."""
    return None if not items else items[0] if len(items) == 1 else items


def with_send_noise(defenses: list[Defense], stds: list[float]) -> list[Defense]:
    """Each defense once per std: as it is for 0, else sending with fresh Gaussian noise of that
    std on every call (named `NAME+noiseSTD`): randomness per request on the device."""
    bad = [s for s in stds if not (math.isfinite(s) and s >= 0)]
    if bad or not stds:
        raise ValueError(f"--send-noise takes stds of 0 or more, got {bad[0] if bad else 'none'}")
    if len(set(stds)) != len(stds):
        raise ValueError(f"--send-noise lists a std twice: {stds}")
    return [d if std == 0 else replace(
                d, name=f"{d.name}+noise{std:g}", noise=std, _generator=None,
                description=f"{d.description}, fresh Gaussian noise (std {std:g}) per request")
            for d in defenses for std in stds]


def _sweep(s: AttackSettings, classifier: LoadedClassifier | None, ds: Dataset,
           device: torch.device, quiet: bool
           ) -> tuple[list[Defense], dict[str, Any], LoadedClassifier | None]:
    paths, sweep = train_sweep(s.classifier, s.swept_lams, Path(s.out) / "sweep", data=s.data,
                               recipe=s.recipe, epochs=s.sweep_epochs,
                               train_subset=s.sweep_train_subset, test_subset=s.test_subset,
                               seed=s.seed, device=str(device), quiet=quiet)
    swept, classifier = _obfuscator_defenses(paths, classifier, ds.classes, device)
    for defense, lam in zip(swept, sweep["lams"], strict=True):
        defense.name = f"sweep-lam{lam:g}"
    return swept, sweep, classifier


def _obfuscator_defenses(paths: list, classifier: LoadedClassifier | None,
                         classes: tuple[str, ...], device: torch.device
                         ) -> tuple[list[Defense], LoadedClassifier | None]:
    given = [classifier] if classifier else []
    obfuscators = load_obfuscators(paths, classes, device)
    pair_with_classifiers(obfuscators, given, classes, device, add_missing=classifier is None)
    if len(given) > 1:
        raise ValueError("the obfuscators were trained for different classifiers ("
                         + ", ".join(c.path for c in given) + "); attack them one classifier "
                         "at a time or pass --classifier")
    return [loaded_defense(o) for o in obfuscators], (given[0] if given else None)


def _write_curves(result: dict[str, Any], out: str) -> list[Path]:
    curves = {d["name"]: [c for a in d["attacks"].values() for c in a.get("curves", [])]
              for d in result["defenses"]}
    if not any(curves.values()):
        return []
    return write_result(attacker_curves({k: v for k, v in curves.items() if v}), out)


def _calibration(ds: Dataset, device: torch.device) -> torch.Tensor:
    images = ds.train.subset(CALIBRATION_IMAGES, seed=1).images
    return to_tensor_images(images, device).float().div_(255)
