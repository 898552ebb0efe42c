"""`veil derive`: a user's own obfuscator, derived from a shipped one (or any obfuscator
checkpoint), so that whoever holds the parent's weights (everyone, for a zoo entry) cannot link
what the derived one sends to its photos by re-obfuscating candidates.

One adversarial epoch of fine-tuning from the parent with `lam_away` (train/obfuscator.py's
term: among each batch, a sent image's own photo, re-obfuscated by the parent, must be no nearer
than by chance), seeded with the user's own seed: drawn from the operating system unless given,
and recorded only in the run folder, which, like the derived weights, stays the user's secret.
The run folder is `veil train obfuscator`'s (config, metrics, curve, checkpoints, `--resume`).

What it does not protect against: anyone can derive a sibling from the same public parent, and
siblings, whatever their seeds, end so close to one another that each links what another sends
by re-obfuscation (95-100 % among 1,000 photos: results/cpu/linkage/derived/pairwise.md). The
seed changes the data order, not where the fine-tuning goes.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.options import data_option, quiet_option, threads_option
from ..core.settings import add_options, at_least, from_args, option, positive, read_settings_file
from ..core.specs import ZOO_PREFIX
from ..data.sources import default_source
from ..train.obfuscator import ObfuscatorConfig, make_config, train_obfuscator
from ..zoo.build import extract_classifier, extract_obfuscator


@dataclass(kw_only=True)
class DeriveSettings:
    parent: str = option("zoo:default", "the obfuscator to derive from: zoo:NAME or an "
                                        "obfuscator checkpoint", metavar="SPEC")
    classifier: str | None = option(
        None, "the frozen classifier (default: the zoo entry's, or the one the parent's "
              "checkpoint records)", metavar="PT")
    data: str | None = data_option("training images")
    out: str = option(help="run folder of the derived obfuscator (keep it private)",
                      metavar="DIR")
    seed: int | None = option(None, "the user's seed (default: drawn from the operating "
                                    "system; recorded in the run folder only)")
    epochs: int = option(1, "adversarial epochs of fine-tuning")
    lam_away: float = option(
        2.0, "weight of the term that moves away from the parent (2: the measured point that keeps "
             "accuracy within 1 point of the parent's; results/cpu/linkage/derived/)")
    lr: float = option(5e-4, "learning rate of the obfuscator and its co-trained attacker")
    train_subset: int | None = option(None, "training images (default: all)", metavar="N")
    resume: bool = option(False, "continue a killed run in --out")
    threads: int | None = threads_option()
    quiet: bool = quiet_option()

    def __post_init__(self) -> None:
        at_least(self, epochs=1, train_subset=1, threads=1)
        positive(self, "lam_away", "lr")


def derive(settings: DeriveSettings | None = None, **options: Any) -> dict[str, Any]:
    """Train the derived obfuscator `settings` describe; returns its last metrics row."""
    s = settings or DeriveSettings(**options)
    out = Path(s.out)
    parent, classifier = _parent_files(s, out / "parent")
    config = make_config(
        "staged", classifier=str(classifier), data=s.data or default_source(), out=str(out),
        epochs=s.epochs, lr=s.lr, lr_deobfuscator=s.lr, lam_ramp_epochs=0, init=str(parent),
        lam_away=s.lam_away, seed=s.seed if s.seed is not None else _draw_seed(out, s.resume),
        train_subset=s.train_subset, threads=s.threads, curve_every=10_000)
    return train_obfuscator(config, resume=s.resume, quiet=s.quiet)


def _parent_files(s: DeriveSettings, folder: Path) -> tuple[Path, Path]:
    """(the parent's obfuscator checkpoint, the classifier it trains against) as files."""
    if not s.parent.startswith(ZOO_PREFIX):
        if s.classifier is None:
            from ..models.loading import load_obfuscator_pair

            recorded = (load_obfuscator_pair(s.parent)[2].get("classifier") or {}).get("path")
            if not recorded:
                raise ValueError(f"{s.parent} records no classifier file: pass --classifier")
            return Path(s.parent), Path(recorded)
        return Path(s.parent), Path(s.classifier)
    name = s.parent.removeprefix(ZOO_PREFIX)
    folder.mkdir(parents=True, exist_ok=True)
    classifier = Path(s.classifier) if s.classifier else folder / "classifier.pt"
    if not s.classifier and not classifier.is_file():
        extract_classifier(name, classifier)
    parent = folder / "obfuscator.pt"
    if not parent.is_file():
        extract_obfuscator(name, parent, None if s.classifier else classifier)
    return parent, classifier


def _draw_seed(out: Path, resume: bool) -> int:
    """A fresh seed from the operating system; on --resume, the one the run recorded."""
    if resume and (out / "config.yaml").is_file():
        return read_settings_file(out / "config.yaml", ObfuscatorConfig)["seed"]
    return secrets.randbits(32)  # numpy's seeds stop at 2**32; each guess costs a training run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, DeriveSettings)


def run(args: argparse.Namespace) -> int:
    row = derive(from_args(DeriveSettings, args))
    print(f"derived obfuscator: {row['obfuscated_acc']:.2%} obfuscated (plain "
          f"{row['plain_acc']:.2%}); {Path(args.out) / 'model.pt'} (keep it and its run folder "
          "private: whoever holds them links what it sends)")
    print("warning: this protects against the parent's weights only. Anyone can derive a "
          "sibling from the same parent, and siblings link each other's sends 95-100 % by "
          "re-obfuscation (results/cpu/linkage/derived/pairwise.md)", file=sys.stderr)
    return 0
