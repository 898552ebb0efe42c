"""`veil attack`: attack frozen obfuscators and baselines; `veil attack sweep` adds a λ sweep.

Two families of attacks: reconstruction (redraw the picture: the co-trained deobfuscator, fresh
decoders, white-box inversion) and linkage (find the photo a sent image came from among a
gallery: the operator's classifier features, a learned contrastive matcher).

Writes attacks.json, attacks.md, one example grid per defense and tradeoff.png (accuracy vs the
strongest attacker's SSIM, Pareto front marked) into --out; while it runs, the finished
defenses are kept in attacks.partial.json, so that `--resume` continues a killed run.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import replace
from pathlib import Path

import torch

from ..core.options import add_evaluation, apply_runtime
from ..core.runtime import quiet_default
from ..data import Dataset, to_tensor_images
from ..report.results import write_result
from ..run_inputs import (
    LoadedClassifier,
    LoadedObfuscator,
    load_classifiers,
    load_data,
    load_obfuscators,
    pair_with_classifiers,
)
from ..train.obfuscator import RECIPES
from .baselines import expand_names, make_baseline
from .budget import BUDGETS, AttackBudget, preset
from .defenses import Defense, obfuscator_defense
from .fresh_decoder import attacker_curves
from .partial import PARTIAL, PartialResult
from .suite import ATTACKS, DEFAULT_ATTACKS, AttackSetup, check_attacks, run_attack_suite
from .sweep import DEFAULT_LAMS, train_sweep

DEFAULT_OUT = "results/attacks"
CALIBRATION_IMAGES = 512  # training images for the random obfuscator's BatchNorm statistics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # argparse reads "-inf" and "-nan" as options; as values they reach --send-noise's check
    parser._negative_number_matcher = re.compile(  # noqa: SLF001  (no public hook)
        r"^-(\d+|\d*\.\d+|inf|infinity|nan)$", re.IGNORECASE)
    parser.add_argument("mode", nargs="?", choices=["run", "sweep"], default="run",
                        help="run (default): attack the given defenses; sweep: also train "
                             "obfuscators for several λ (--lams) and plot the trade-off against "
                             "all baselines")
    parser.add_argument("--obfuscators", nargs="+", default=[], metavar="PT",
                        help="trained obfuscator checkpoints to attack")
    parser.add_argument("--send-noise", nargs="+", type=float, default=[0.0], metavar="STD",
                        help="randomness per request, the linkage lever: each obfuscator is "
                             "also attacked with fresh Gaussian noise of this std added to what "
                             "it sends (before the 8-bit rule), once per value; 0 = as is "
                             "(default: 0)")
    parser.add_argument("--attacker-weights", metavar="PT",
                        help="link_reobfuscate runs this obfuscator checkpoint (what the "
                             "attacker holds: a sibling's, a derived obfuscator's parent) "
                             "instead of each defense's own weights")
    parser.add_argument("--classifier", metavar="PT",
                        help="the frozen classifier that scores accuracy (default: the one the "
                             "obfuscators were trained for)")
    parser.add_argument("--baselines", nargs="+", default=None, metavar="NAME",
                        help="baseline transforms: downsample4 downsample8 blur[:SIGMA] "
                             "pixelate[:B] noise[:STD] random_obfuscator identity (no "
                             "defense), or 'all' (the default in sweep mode)")
    parser.add_argument("--attacks", nargs="+", default=list(DEFAULT_ATTACKS), metavar="NAME",
                        help=f"attacks to run (default: all): {', '.join(ATTACKS)}")
    add_evaluation(parser, DEFAULT_OUT)
    parser.add_argument("--resume", action="store_true",
                        help="continue a killed run in --out: the defenses it finished "
                             f"({PARTIAL}) are reused when the settings are the same")
    b = parser.add_argument_group("attacker budget (recorded with the results; the options "
                                  "below change the --budget preset)")
    b.add_argument("--budget", choices=sorted(BUDGETS), default="quick",
                   help="quick (default): fresh decoders for a fixed number of epochs; hour: "
                        "each until its validation curve is flat, capped so a CPU-scale run "
                        "fits about an hour; full: until every curve is flat")
    b.add_argument("--epochs", type=int, help="fresh decoders: training epochs (quick)")
    b.add_argument("--train-size", type=int, metavar="N",
                   help="fresh decoders: training images the attacker queries (default: all)")
    b.add_argument("--batch-size", type=int)
    b.add_argument("--lr", type=float)
    b.add_argument("--unet-width", type=int)
    b.add_argument("--ssim-weights", type=float, nargs="+", metavar="W",
                   help="until flat: one decoder per loss, MSE + W (1 - SSIM); 0 is MSE")
    b.add_argument("--attacker-seconds", type=float, metavar="S", dest="time_s",
                   help="until flat: training seconds per decoder and loss")
    b.add_argument("--attacker-images", type=int, metavar="N", dest="max_images",
                   help="until flat: training images per decoder and loss")
    b.add_argument("--attacker-eval-every", type=int, metavar="N", dest="eval_every",
                   help="until flat: validate every N training images")
    b.add_argument("--gallery-size", type=int, metavar="N",
                   help="linkage: test photos each sent image is looked up among (default 1000)")
    b.add_argument("--matcher-seconds", type=float, metavar="S", dest="matcher_time_s",
                   help="linkage, until flat: training seconds of the learned matcher")
    b.add_argument("--matcher-images", type=int, metavar="N", dest="matcher_max_images",
                   help="linkage, until flat: training pairs of the learned matcher")
    b.add_argument("--matcher-eval-every", type=int, metavar="N",
                   help="linkage: validate the matcher every N training pairs")
    b.add_argument("--matcher-width", type=int, metavar="W",
                   help="linkage: the matcher's encoder width (default 32)")
    b.add_argument("--fit-shortlist", type=int, metavar="K",
                   help="link_fit: candidates fitted per received image (default 10)")
    b.add_argument("--fit-steps", type=int, metavar="N",
                   help="link_fit: optimiser steps on each candidate's noise (default 40)")
    b.add_argument("--inversion-images", type=int, metavar="N",
                   help="test images attacked by inversion")
    b.add_argument("--inversion-steps", type=int)
    b.add_argument("--restarts", type=int, help="inversion starts per image; the best "
                                                "objective wins")
    b.add_argument("--inversion-lr", type=float)
    b.add_argument("--tv-weight", type=float)
    s = parser.add_argument_group("λ sweep (trains one obfuscator per λ)")
    s.add_argument("--lams", nargs="+", type=float, metavar="LAM",
                   help=f"λ values (sweep default: {' '.join(f'{v:g}' for v in DEFAULT_LAMS)})")
    s.add_argument("--recipe", default="fast", choices=sorted(RECIPES))
    s.add_argument("--sweep-epochs", type=int, help="obfuscator training epochs per λ")
    s.add_argument("--sweep-train-subset", type=int, metavar="N",
                   help="obfuscator training images per λ (default: all)")


def budget_from(args: argparse.Namespace) -> AttackBudget:
    """The --budget preset with the options given on top."""
    return preset(args.budget, epochs=args.epochs, train_size=args.train_size,
                  batch_size=args.batch_size, lr=args.lr, unet_width=args.unet_width,
                  ssim_weights=args.ssim_weights and tuple(args.ssim_weights),
                  time_s=args.time_s, max_images=args.max_images, eval_every=args.eval_every,
                  inversion_images=args.inversion_images, inversion_steps=args.inversion_steps,
                  inversion_restarts=args.restarts, inversion_lr=args.inversion_lr,
                  tv_weight=args.tv_weight, gallery_size=args.gallery_size,
                  matcher_time_s=args.matcher_time_s, matcher_max_images=args.matcher_max_images,
                  matcher_eval_every=args.matcher_eval_every, matcher_width=args.matcher_width,
                  fit_shortlist=args.fit_shortlist, fit_steps=args.fit_steps)


def run(args: argparse.Namespace) -> int:
    quiet = True if args.quiet else quiet_default()
    budget = budget_from(args)
    attacks = check_attacks(args.attacks)
    sweep_mode = args.mode == "sweep"
    lams = args.lams if args.lams is not None else (list(DEFAULT_LAMS) if sweep_mode else [])
    baseline_names = expand_names(args.baselines or (["all"] if sweep_mode else []))
    if lams and not args.classifier:
        raise ValueError("a λ sweep needs --classifier (the frozen classifier to train against)")
    with_send_noise([], args.send_noise)  # bad stds are refused before the data loads
    device = apply_runtime(args)
    ds, data_info = load_data(args.data, args.test_subset, args.seed,
                                image_size=args.image_size)
    classifier = _classifier(args, ds.classes, device)
    defenses, classifier = _obfuscator_defenses(args.obfuscators, classifier, ds.classes, device)
    defenses = with_send_noise(defenses, args.send_noise)
    calibration = _calibration(ds, device) if baseline_names else None
    baselines = [make_baseline(name, calibration, args.seed) for name in baseline_names]
    if classifier is None and baselines:
        raise ValueError("baselines are scored with a frozen classifier: pass --classifier")
    sweep = None
    if lams:
        paths, sweep = train_sweep(args.classifier, lams, Path(args.out) / "sweep",
                                   data=args.data, recipe=args.recipe, epochs=args.sweep_epochs,
                                   train_subset=args.sweep_train_subset,
                                   test_subset=args.test_subset, seed=args.seed,
                                   device=str(device), quiet=quiet)
        swept, classifier = _obfuscator_defenses(paths, classifier, ds.classes, device)
        for defense, lam in zip(swept, sweep["lams"], strict=True):
            defense.name = f"sweep-lam{lam:g}"
        defenses += swept
    defenses += baselines
    held = load_obfuscators([args.attacker_weights], ds.classes, device)[0] \
        if args.attacker_weights else None
    attack_setup = AttackSetup(ds, data_info, classifier, attacks, budget, device, args.seed,
                               quiet, held.obfuscator if held else None)
    partial = PartialResult.open(args.out, {
        "budget": attack_setup.recorded_budget(), "attacks": attacks, "data": data_info,
        "seed": args.seed, "classifier": classifier.sha256 if classifier else None,
        "attacker_weights": held.sha256 if held else None}, args.resume)
    result = run_attack_suite(defenses, attack_setup, sweep, partial=partial)
    if held is not None:
        result["attacker_weights"] = {"path": held.path, "sha256": held.sha256}
    written = write_result(result, args.out)
    curves = {d["name"]: [c for a in d["attacks"].values() for c in a.get("curves", [])]
              for d in result["defenses"]}
    if any(curves.values()):
        written += write_result(attacker_curves({k: v for k, v in curves.items() if v}),
                                args.out)
    partial.close()
    print(written[1].read_text())
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _classifier(args: argparse.Namespace, classes: tuple[str, ...], device: torch.device
                ) -> LoadedClassifier | None:
    if not args.classifier:
        return None
    return load_classifiers([args.classifier], classes, device)[0]


def _obfuscator_defenses(paths: list, classifier: LoadedClassifier | None,
                         classes: tuple[str, ...], device: torch.device
                         ) -> tuple[list[Defense], LoadedClassifier | None]:
    obfuscators = load_obfuscators(paths, classes, device)
    given = [classifier] if classifier else []
    pair_with_classifiers(obfuscators, given, classes, device, add_missing=classifier is None)
    if len(given) > 1:
        raise ValueError("the obfuscators were trained for different classifiers ("
                         + ", ".join(c.path for c in given) + "); attack them one classifier "
                         "at a time or pass --classifier")
    defenses = [obfuscator_defense(o.label, o.obfuscator, o.deobfuscator, _obf_info(o))
                for o in obfuscators]
    return defenses, (given[0] if given else None)


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


def _obf_info(o: LoadedObfuscator) -> dict:
    info = o.info()
    return {k: info[k] for k in ("path", "sha256", "lam", "recipe", "epochs", "train_subset")}


def _calibration(ds: Dataset, device: torch.device) -> torch.Tensor:
    images = ds.train.subset(CALIBRATION_IMAGES, seed=1).images
    return to_tensor_images(images, device).float().div_(255)
