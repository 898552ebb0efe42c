"""`veil attack`: attack frozen obfuscators and baselines; `veil attack sweep` adds a λ sweep.

Writes attacks.json, attacks.md, one example grid per defense and tradeoff.png (accuracy vs the
strongest attacker's SSIM, Pareto front marked) into --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..core.options import add_evaluation, apply_runtime
from ..core.runtime import quiet_default
from ..data import Dataset, to_tensor_images
from ..loading import (
    LoadedClassifier,
    LoadedObfuscator,
    load_classifiers,
    load_data,
    load_obfuscators,
    pair_with_classifiers,
)
from ..report.results import write_result_with
from ..train.obfuscator import RECIPES
from .baselines import expand_names, make_baseline
from .budget import AttackBudget
from .defenses import Defense, obfuscator_defense
from .report import RENDERER
from .suite import ATTACKS, DEFAULT_ATTACKS, AttackSetup, check_attacks, run_attack_suite
from .sweep import DEFAULT_LAMS, train_sweep

DEFAULT_OUT = "results/attacks"
CALIBRATION_IMAGES = 512  # training images for the random obfuscator's BatchNorm statistics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mode", nargs="?", choices=["run", "sweep"], default="run",
                        help="run (default): attack the given defenses; sweep: also train "
                             "obfuscators for several λ (--lams) and plot the trade-off against "
                             "all baselines")
    parser.add_argument("--obfuscators", nargs="+", default=[], metavar="PT",
                        help="trained obfuscator checkpoints to attack")
    parser.add_argument("--classifier", metavar="PT",
                        help="the frozen classifier that scores accuracy (default: the one the "
                             "obfuscators were trained for)")
    parser.add_argument("--baselines", nargs="+", default=None, metavar="NAME",
                        help="baseline transforms: downsample4 downsample8 blur[:SIGMA] "
                             "pixelate[:B] noise[:STD] random_obfuscator, or 'all' (the default "
                             "in sweep mode)")
    parser.add_argument("--attacks", nargs="+", default=list(DEFAULT_ATTACKS), metavar="NAME",
                        help=f"attacks to run (default: all): {', '.join(ATTACKS)}")
    add_evaluation(parser, DEFAULT_OUT)
    b = parser.add_argument_group("attacker budget (recorded with the results)")
    b.add_argument("--epochs", type=int, default=AttackBudget.epochs,
                   help="fresh decoders: training epochs")
    b.add_argument("--train-size", type=int, metavar="N",
                   help="fresh decoders: training images the attacker queries (default: all)")
    b.add_argument("--batch-size", type=int, default=AttackBudget.batch_size)
    b.add_argument("--lr", type=float, default=AttackBudget.lr)
    b.add_argument("--unet-width", type=int, default=AttackBudget.unet_width)
    b.add_argument("--inversion-images", type=int, default=AttackBudget.inversion_images,
                   metavar="N", help="test images attacked by inversion")
    b.add_argument("--inversion-steps", type=int, default=AttackBudget.inversion_steps)
    b.add_argument("--restarts", type=int, default=AttackBudget.inversion_restarts,
                   help="inversion starts per image; the best objective wins")
    b.add_argument("--inversion-lr", type=float, default=AttackBudget.inversion_lr)
    b.add_argument("--tv-weight", type=float, default=AttackBudget.tv_weight)
    s = parser.add_argument_group("λ sweep (trains one obfuscator per λ)")
    s.add_argument("--lams", nargs="+", type=float, metavar="LAM",
                   help=f"λ values (sweep default: {' '.join(f'{v:g}' for v in DEFAULT_LAMS)})")
    s.add_argument("--recipe", default="fast", choices=sorted(RECIPES))
    s.add_argument("--sweep-epochs", type=int, help="obfuscator training epochs per λ")
    s.add_argument("--sweep-train-subset", type=int, metavar="N",
                   help="obfuscator training images per λ (default: all)")


def budget_from(args: argparse.Namespace) -> AttackBudget:
    return AttackBudget(epochs=args.epochs, train_size=args.train_size,
                        batch_size=args.batch_size, lr=args.lr, unet_width=args.unet_width,
                        inversion_images=args.inversion_images,
                        inversion_steps=args.inversion_steps, inversion_restarts=args.restarts,
                        inversion_lr=args.inversion_lr, tv_weight=args.tv_weight)


def run(args: argparse.Namespace) -> int:
    quiet = True if args.quiet else quiet_default()
    budget = budget_from(args)
    attacks = check_attacks(args.attacks)
    sweep_mode = args.mode == "sweep"
    lams = args.lams if args.lams is not None else (list(DEFAULT_LAMS) if sweep_mode else [])
    baseline_names = expand_names(args.baselines or (["all"] if sweep_mode else []))
    if lams and not args.classifier:
        raise ValueError("a λ sweep needs --classifier (the frozen classifier to train against)")
    device = apply_runtime(args)
    ds, data_info = load_data(args.data, args.test_subset, args.seed,
                                image_size=args.image_size)
    classifier = _classifier(args, ds.classes, device)
    defenses, classifier = _obfuscator_defenses(args.obfuscators, classifier, ds.classes, device)
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
    attack_setup = AttackSetup(ds, data_info, classifier, attacks, budget, device, args.seed,
                               quiet)
    result = run_attack_suite(defenses, attack_setup, sweep)
    written = write_result_with(RENDERER, result, args.out)
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


def _obf_info(o: LoadedObfuscator) -> dict:
    info = o.info()
    return {k: info[k] for k in ("path", "sha256", "lam", "recipe", "epochs", "train_subset")}


def _calibration(ds: Dataset, device: torch.device) -> torch.Tensor:
    images = ds.train.subset(CALIBRATION_IMAGES, seed=1).images
    return to_tensor_images(images, device).float().div_(255)
