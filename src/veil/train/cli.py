"""`veil train classifier` and `veil train obfuscator`."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..core import env
from ..core.options import add_data, add_device, add_quiet, add_threads
from . import classifier as clf
from . import obfuscator as obf


def _optional_bool(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    parser.add_argument(f"--{name}", dest=name.replace("-", "_"),
                        action=argparse.BooleanOptionalAction, default=None, help=help_text)


def _common(p: argparse.ArgumentParser) -> None:
    add_data(p)
    p.add_argument("--config", type=Path, metavar="YAML",
                   help="rerun a run folder's config.yaml; options given here override it")
    p.add_argument("--out", help="run folder (config, metrics, checkpoints); required unless "
                                 "--config names one")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    add_device(p, default=None)
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"])
    _optional_bool(p, "channels-last", "channels-last memory format (default on)")
    p.add_argument("--crop-padding", type=int, help="random-crop padding in pixels (0: off)")
    _optional_bool(p, "flip", "random horizontal flips")
    p.add_argument("--train-subset", type=int, help="use only N training images")
    p.add_argument("--test-subset", type=int, help="evaluate on only N test images")
    add_threads(p)
    add_quiet(p)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    c = sub.add_parser("classifier", help="train a zoo classifier on plain images",
                       description="Train a zoo classifier (SGD-Nesterov, one-cycle, label "
                                   "smoothing, crop+flip on the device). Launch with torchrun "
                                   "for multi-GPU (DDP).")
    c.add_argument("--model", help="zoo classifier (see `veil models`; default fastnet)")
    _common(c)
    c.add_argument("--weight-decay", type=float)
    c.add_argument("--label-smoothing", type=float)
    _optional_bool(c, "compile", "torch.compile the model")

    o = sub.add_parser("obfuscator", help="train an obfuscator/deobfuscator pair against a "
                                          "frozen classifier",
                       description="Adversarial training: the obfuscator minimises L_c - lambda "
                                   "* L_r, the deobfuscator minimises L_r, in the same steps.")
    o.add_argument("--classifier", action="append",
                   help="the frozen classifier: a veil checkpoint (model.pt), a torch.export "
                        "program (.pt2) or package.module:function building an nn.Module that "
                        "maps (N, 3, H, W) images in [0, 1] to logits; required unless --config "
                        "names one. Given several times: one obfuscator for the ensemble "
                        "(--weights/--mean/--std apply to the first)")
    o.add_argument("--ensemble-mode", choices=["mean", "cycle"],
                   help="with several classifiers: 'mean' (default) of their losses in every "
                        "step, or 'cycle': one member per step, in turn (the cost of one)")
    o.add_argument("--weights", dest="classifier_weights", metavar="FILE",
                   help="state dict for a package.module:function classifier (loaded with "
                        "weights_only=True)")
    o.add_argument("--mean", dest="classifier_mean", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="the classifier's input normalisation: it is given (x - mean) / std")
    o.add_argument("--std", dest="classifier_std", type=float, nargs=3, metavar=("R", "G", "B"))
    o.add_argument("--recipe", choices=sorted(obf.RECIPES),
                   help=f"'{obf.DEFAULT_RECIPE}' (default: warm starts, then adversarial; for a "
                        "CPU hour), 'fast' (adversarial only) or 'paper' (Appendix A exactly)")
    _common(o)
    o.add_argument("--lam", type=float, help="lambda, the weight of the privacy term")
    o.add_argument("--lr-deobfuscator", type=float)
    o.add_argument("--distill", type=float, help="weight of the distillation term (0: off)")
    o.add_argument("--temperature", type=float)
    o.add_argument("--warmup-epochs", type=float, help="epochs over which lambda ramps up")
    o.add_argument("--identity-epochs", type=float,
                   help="first train the obfuscator alone to reproduce its input for this many "
                        "epochs (a warm start; 0: off)")
    o.add_argument("--encoder-epochs", type=float,
                   help="warm start 1: epochs of the encoder alone as a classifier (0: off)")
    o.add_argument("--utility-epochs", type=float,
                   help="warm start 2: epochs of the obfuscator for the classifier alone, "
                        "no deobfuscator (0: off)")
    o.add_argument("--warm-start-lr", type=float, help="peak Adam learning rate of the warm starts")
    o.add_argument("--warm-start-batch-size", type=int)
    o.add_argument("--feature-weight", type=float,
                   help="weight of the dense target: the classifier's penultimate features on "
                        "the plain image (0: off)")
    o.add_argument("--curve-every", type=int, metavar="IMAGES",
                   help="log obfuscated accuracy on a test slice every IMAGES training images "
                        "(curve.jsonl; 0: off)")
    o.add_argument("--schedule", choices=["step", "onecycle", "constant"])
    _optional_bool(o, "quantize", "8-bit straight-through quantisation of the sent image")


def _overrides(args: argparse.Namespace, config_type: type) -> dict:
    names = {f.name for f in fields(config_type)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def config_file_values(path: Path, config_type: type) -> dict[str, Any]:
    """The settings of a run folder's config.yaml; an unknown key is an error that names it."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ValueError(f"--config {path}: cannot read it ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise ValueError(f"--config {path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping of settings, got "
                         f"{type(data).__name__}")
    names = {f.name for f in fields(config_type)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"--config {path}: unknown key {unknown[0]!r} (valid keys: "
                         f"{', '.join(sorted(names))})")
    return data


def settings(args: argparse.Namespace, config_type: type) -> dict[str, Any]:
    """--config's values (if any) with the options given on the command line on top."""
    values = config_file_values(args.config, config_type) if args.config else {}
    values.update(_overrides(args, config_type))
    if not values.get("out"):
        raise ValueError("--out is required (or --config with an 'out' key)")
    return values


def run(args: argparse.Namespace) -> int:
    quiet = True if args.quiet else None
    if args.what == "classifier":
        values = settings(args, clf.ClassifierConfig)
        config = clf.make_config(values.pop("model", None) or "fastnet", **values)
        row = clf.train_classifier(config, resume=args.resume, quiet=quiet)
        if env.distributed()[0] == 0:
            print(f"done: test accuracy {row['test_acc']:.2%}; checkpoint {config.out}/model.pt")
        return 0
    values = settings(args, obf.ObfuscatorConfig)
    if isinstance(values.get("classifier"), list):  # --classifier given once or more
        values["classifier"], *rest = values["classifier"]
        values["ensemble"] = rest or values.get("ensemble")
    config = obf.make_config(values.pop("recipe", None) or obf.DEFAULT_RECIPE, **values)
    row = obf.train_obfuscator(config, resume=args.resume, quiet=quiet)
    print(f"done: plain {row['plain_acc']:.2%}, obfuscated (8-bit) {row['obfuscated_acc']:.2%}, "
          f"deobfuscator PSNR {row['deobfuscator_psnr']:.1f} dB; "
          f"checkpoint {config.out}/model.pt")
    return 0
