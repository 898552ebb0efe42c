"""`veil train classifier` and `veil train obfuscator`."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields

from . import classifier as clf
from . import obfuscator as obf


def _optional_bool(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(f"--{name}", dest=name.replace("-", "_"),
                        action=argparse.BooleanOptionalAction, default=None, help=help_text)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None,
                   help="data source: 'cifar10' (download), a folder, a .zip or 'sample' "
                        "(default: $VEIL_DATA or cifar10)")
    p.add_argument("--out", required=True, help="run folder (config, metrics, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    _optional_bool(p, "channels-last", "channels-last memory format (default on)")
    p.add_argument("--crop-padding", type=int, help="random-crop padding in pixels (0: off)")
    _optional_bool(p, "flip", "random horizontal flips")
    p.add_argument("--train-subset", type=int, help="use only N training images")
    p.add_argument("--test-subset", type=int, help="evaluate on only N test images")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    c = sub.add_parser("classifier", help="train a zoo classifier on plain images",
                       description="Train a zoo classifier (SGD-Nesterov, one-cycle, label "
                                   "smoothing, crop+flip on the device). Launch with torchrun "
                                   "for multi-GPU (DDP).")
    c.add_argument("--model", default="fastnet", help="zoo classifier (see `veil models`)")
    _common(c)
    c.add_argument("--weight-decay", type=float)
    c.add_argument("--label-smoothing", type=float)
    _optional_bool(c, "compile", "torch.compile the model")

    o = sub.add_parser("obfuscator", help="train an obfuscator/deobfuscator pair against a "
                                          "frozen classifier",
                       description="Adversarial training: the obfuscator minimises L_c - lambda "
                                   "* L_r, the deobfuscator minimises L_r, in the same steps.")
    o.add_argument("--classifier", required=True, help="trained classifier checkpoint (model.pt)")
    o.add_argument("--recipe", default="fast", choices=sorted(obf.RECIPES),
                   help="'paper' (Appendix A exactly) or 'fast' (default, for limited compute)")
    _common(o)
    o.add_argument("--lam", type=float, help="lambda, the weight of the privacy term")
    o.add_argument("--lr-deobfuscator", type=float)
    o.add_argument("--distill", type=float, help="weight of the distillation term (0: off)")
    o.add_argument("--temperature", type=float)
    o.add_argument("--warmup-epochs", type=float, help="epochs over which lambda ramps up")
    o.add_argument("--identity-epochs", type=float,
                   help="first train the obfuscator alone to reproduce its input for this many "
                        "epochs (a warm start; 0: off)")
    o.add_argument("--schedule", choices=["step", "onecycle", "constant"])
    _optional_bool(o, "quantize", "8-bit straight-through quantisation of the sent image")


def _overrides(args: argparse.Namespace, config_type: type) -> dict:
    names = {f.name for f in fields(config_type)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def run(args: argparse.Namespace) -> int:
    quiet = True if args.quiet else None
    if args.what == "classifier":
        overrides = _overrides(args, clf.ClassifierConfig)
        overrides.pop("model", None)
        config = clf.make_config(args.model, **overrides)
        row = clf.train_classifier(config, resume=args.resume, quiet=quiet)
        if os.environ.get("RANK", "0") == "0":
            print(f"done: test accuracy {row['test_acc']:.2%}; checkpoint {config.out}/model.pt")
        return 0
    overrides = _overrides(args, obf.ObfuscatorConfig)
    overrides.pop("recipe", None)
    config = obf.make_config(args.recipe, **overrides)
    row = obf.train_obfuscator(config, resume=args.resume, quiet=quiet)
    print(f"done: plain {row['plain_acc']:.2%}, obfuscated (8-bit) {row['obfuscated_acc']:.2%}, "
          f"deobfuscator PSNR {row['deobfuscator_psnr']:.1f} dB; "
          f"checkpoint {config.out}/model.pt")
    return 0
