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
import re

from ..core.options import add_evaluation
from ..core.settings import add_options, from_args
from .budget import BUDGETS, AttackBudget, preset
from .run import AttackSettings, attack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # argparse reads "-inf" and "-nan" as options; as values they reach --send-noise's check
    parser._negative_number_matcher = re.compile(  # noqa: SLF001  (no public hook)
        r"^-(\d+|\d*\.\d+|inf|infinity|nan)$", re.IGNORECASE)
    parser.add_argument("mode", nargs="?", choices=["run", "sweep"], default="run",
                        help=AttackSettings.__dataclass_fields__["mode"].metadata["help"])
    add_options(parser, AttackSettings, ["obfuscators", "send_noise", "attacker_weights",
                                         "classifier", "baselines", "attacks"])
    add_evaluation(parser, AttackSettings)
    add_options(parser, AttackSettings, ["resume"])
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
    add_options(s, AttackSettings, ["lams", "recipe", "sweep_epochs", "sweep_train_subset"])


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
    done = attack(from_args(AttackSettings, args, budget=budget_from(args)))
    print(done.files[1].read_text())
    print("wrote " + ", ".join(str(p) for p in done.files))
    return 0
