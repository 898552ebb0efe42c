"""`veil train classifier` and `veil train obfuscator`.

Each shows the options people change; every other setting of its config is reached with
`--set key=value` or `--config FILE`. A run's settings are, in order, each over the one before:
the recipe (or the model's defaults), --config, the options given, --set.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core import env
from ..core.options import add_data, add_device, add_quiet, add_threads
from ..core.settings import parse_setting, read_settings_file, setting_names
from . import classifier as clf
from . import obfuscator as obf


def _common(p: argparse.ArgumentParser, what: str) -> None:
    add_data(p, image_size=False)
    p.add_argument("--out", help="run folder (config, metrics, checkpoints); required unless "
                                 "--config names one")
    p.add_argument("--epochs", type=int, help=f"{what} epochs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int)
    add_device(p, default=None)
    add_threads(p)
    p.add_argument("--config", type=Path, metavar="YAML",
                   help="settings from a YAML file (a run folder's config.yaml reruns it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting, typed (e.g. --set train_subset=5000 --set "
                        "precision=bf16; lists a,b,c; mappings k:v,k:v); see --print-config")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved settings as YAML and exit")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_quiet(p)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    c = sub.add_parser("classifier", help="train a zoo classifier on plain images",
                       description="Train a zoo classifier (SGD-Nesterov, one-cycle, label "
                                   "smoothing, crop+flip on the device). Launch with torchrun "
                                   "for multi-GPU (DDP).")
    c.add_argument("--model", help="zoo classifier (see `veil models`; default fastnet)")
    _common(c, "training")

    o = sub.add_parser("obfuscator", help="train an obfuscator/deobfuscator pair against a "
                                          "frozen classifier",
                       description="Adversarial training: the obfuscator minimises L_c - lambda "
                                   "* L_r, the deobfuscator minimises L_r, in the same steps.")
    o.add_argument("--classifier", action="append",
                   help="the frozen classifier: a veil checkpoint (model.pt), a torch.export "
                        "program (.pt2) or package.module:function building an nn.Module that "
                        "maps (N, 3, H, W) images in [0, 1] to logits (its weights, mean and std "
                        "with --set classifier_weights=FILE classifier_mean=R,G,B ...); "
                        "required unless --config names one. Given again: one obfuscator for "
                        "the ensemble")
    o.add_argument("--recipe", choices=sorted(obf.RECIPES),
                   help=f"'{obf.DEFAULT_RECIPE}' (default: warm start, then adversarial; "
                        "for a CPU hour), 'fast' (adversarial only) or 'paper' (Appendix A)")
    o.add_argument("--lam", type=float, help="lambda, the weight of the privacy term")
    _common(o, "adversarial")


def _given(args: argparse.Namespace, config_type: type) -> dict[str, Any]:
    names = setting_names(config_type)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def settings(args: argparse.Namespace, config_type: type) -> dict[str, Any]:
    """The settings over the recipe: --config's, then the options given, then --set's."""
    given = _given(args, config_type)
    if isinstance(given.get("classifier"), list):  # --classifier given once or more
        given["classifier"], *rest = given["classifier"]
        if rest:
            given["ensemble"] = rest
    given.update(parse_setting(config_type, pair) for pair in args.set)
    # a file's old names merge over the recipe the run starts from, which the command line wins
    values = read_settings_file(args.config, config_type, recipe=given.get("recipe")) \
        if args.config else {}
    values.update(given)
    if not values.get("out") and not args.print_config:
        raise ValueError("--out is required (or --config with an 'out' key)")
    return values


def resolve(args: argparse.Namespace) -> clf.ClassifierConfig | obf.ObfuscatorConfig:
    """The config this command line would train with."""
    if args.what == "classifier":
        values = settings(args, clf.ClassifierConfig)
        return clf.make_config(values.pop("model", None) or "fastnet", **values)
    values = settings(args, obf.ObfuscatorConfig)
    return obf.make_config(values.pop("recipe", None) or obf.DEFAULT_RECIPE, **values)


def run(args: argparse.Namespace) -> int:
    config = resolve(args)
    if args.print_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(asdict(config), sort_keys=False))
        return 0
    quiet = True if args.quiet else None
    if args.what == "classifier":
        row = clf.train_classifier(config, resume=args.resume, quiet=quiet)
        if env.distributed()[0] == 0:
            print(f"done: test accuracy {row['test_acc']:.2%}; checkpoint {config.out}/model.pt")
        return 0
    row = obf.train_obfuscator(config, resume=args.resume, quiet=quiet)
    print(f"done: plain {row['plain_acc']:.2%}, obfuscated (8-bit) {row['obfuscated_acc']:.2%}, "
          f"deobfuscator PSNR {row['deobfuscator_psnr']:.1f} dB; "
          f"checkpoint {config.out}/model.pt")
    return 0
