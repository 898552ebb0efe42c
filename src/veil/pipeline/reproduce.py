"""`veil reproduce`: the paper's experiments in one resumable command.

Trains the five classifiers of the paper (VGG-19, ResNet-18 with seeds 0 and 1, ResNet-50,
GoogLeNet), an obfuscator for each (the staged recipe, sized per scale), then evaluates
Tables 1-3 (the full 5x5 transfer matrix) and a fresh-decoder attack on every obfuscator.
Phases, in order:

    classifier:<slot>  x5  DIR/classifiers/<slot>/   a `veil train classifier` run folder
    obfuscator:<slot>  x5  DIR/obfuscators/<slot>/   a `veil train obfuscator` run folder
    tables                 DIR/tables.{json,md}, DIR/table2-*.png         (as `veil evaluate`)
    attack:<slot>      x5  DIR/attacks/<slot>.json   fresh decoder + co-trained deobfuscator
    report                 DIR/attacks.{json,md}, attack-*.png, tradeoff.png, reproduce.md

DIR/progress.json records every phase as it starts and ends (plan, measured speed, wall time,
final metrics). `--resume` skips finished phases, continues an unfinished run folder with the
epochs it was planned with, and reruns whatever depends on a phase that had to run again.

`--scale paper` is sized for one GPU (data resident on the device, bf16 autocast, channels-last,
large batches); `--scale tiny` runs the same code on a CPU in a couple of minutes, with small
stand-in models in the five slots and a few hundred images. `--budget-minutes` bounds the wall
time of this invocation: before each training phase the time left is split over the phases
left, a few warm-up steps measure the speed, and the epochs are capped to fit.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch

from ..core.files import atomic_write
from ..core.options import data_option, device_option, quiet_option, threads_option
from ..core.runtime import (
    configure_backends,
    environment,
    quiet_default,
    resolve_device,
)
from ..core.settings import add_options, from_args, one_of, option
from ..data.sources import default_source
from ..report.kinds.reproduce import reproduce_markdown
from ..run_inputs import (
    load_data,
)
from .context import Context
from .phases import PHASE_KINDS, is_finished, phase_weight, summarize
from .plan import SCALES, Phase, Scale, build_phases
from .progress import Progress
from .reproduce_budget import (
    Clock,
    share,
    warm_up,
)

DEFAULT_OUT = "results/reproduce"


def phase_budget(ctx: Context, pending: list[Phase]) -> float | None:
    """The share of the time left for pending[0], against all pending phases (None: no budget)."""
    remaining = ctx.clock.remaining()
    if remaining is None:
        return None
    return share(remaining, [phase_weight(ctx, p) for p in pending])


# --- running phases ---------------------------------------------------------------------------
def invalidate_dependents(ctx: Context, phases: list[Phase], name: str) -> None:
    """Mark every recorded phase that depends, directly or not, on `name` as stale."""
    invalid = {name}
    for p in phases:
        if invalid.intersection(p.depends):
            invalid.add(p.name)
            if ctx.progress.phase(p.name):
                ctx.progress.update(p.name, status="stale")


def run_phases(ctx: Context, phases: list[Phase]) -> None:
    for i, phase in enumerate(phases):
        tag = f"[{i + 1}/{len(phases)}] {phase.name}"
        if is_finished(ctx, phase):
            ctx.log(f"{tag}: done earlier, skipped")
            continue
        invalidate_dependents(ctx, phases, phase.name)
        budget_s = phase_budget(ctx, [p for p in phases[i:] if not is_finished(ctx, p)])
        if budget_s is not None:
            tag += f" (budget {budget_s:.0f}s of {ctx.clock.remaining():.0f}s left)"
        ctx.log(tag)
        t0 = time.perf_counter()
        result = PHASE_KINDS[phase.kind].run(ctx, phase, budget_s)
        wall = time.perf_counter() - t0
        ctx.progress.update(phase.name, status="done", wall_s=round(wall, 2), result=result)
        ctx.log(f"    {summarize(phase, result)} ({wall:.0f}s)")


# --- command line ----------------------------------------------------------------------------
@dataclass(kw_only=True)
class ReproduceSettings:
    """One `veil reproduce` invocation (the Python API, `veil.reproduce`, takes them by name)."""

    scale: Literal["paper", "tiny"] = option(
        "paper", "paper (default): the paper's models on a GPU; tiny: stand-in models and a few "
                 "hundred images, minutes on a CPU")
    data: str | None = data_option()
    out: str = option(DEFAULT_OUT, "run and results folder", metavar="DIR")
    budget_minutes: float | None = option(
        None, "wall-time budget of this invocation; epochs are capped to fit (default: no "
              "limit, the scale's default epochs)", metavar="M")
    resume: bool = option(False, "continue the run in --out: skip finished phases")
    device: str = device_option()
    precision: Literal["auto", "fp32", "bf16"] = option(
        "auto", "auto (default): bf16 autocast on a GPU, fp32 on a CPU")
    compile: bool = option(False, "torch.compile the classifiers")
    seed: int = option(0, "seed of evaluation and attacks")
    classifier_epochs: int | None = option(None, metavar="N")
    obfuscator_epochs: int | None = option(None, metavar="N")
    attack_epochs: int | None = option(None, metavar="N")
    train_subset: int | None = option(
        None, "training images for classifiers, obfuscators and attacks", metavar="N")
    test_subset: int | None = option(None, metavar="N")
    threads: int | None = threads_option()
    quiet: bool = quiet_option()

    def __post_init__(self) -> None:
        one_of(self, "scale", tuple(SCALES))
        one_of(self, "precision", ("auto", "fp32", "bf16"))
        for name in ("classifier_epochs", "obfuscator_epochs", "attack_epochs", "train_subset",
                     "test_subset", "budget_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")


OVERRIDES = ("classifier_epochs", "obfuscator_epochs", "attack_epochs", "train_subset",
             "test_subset")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ReproduceSettings,
                [f.name for f in fields(ReproduceSettings) if f.name not in OVERRIDES])
    g = parser.add_argument_group("overrides of the scale's defaults (the budget still caps "
                                  "epochs)")
    add_options(g, ReproduceSettings, OVERRIDES)


def scale_from(args: ReproduceSettings) -> Scale:
    s = SCALES[args.scale]
    if args.classifier_epochs:
        s = replace(s, classifier_epochs={slot.model: args.classifier_epochs
                                          for slot in s.slots})
    if args.obfuscator_epochs:
        s = replace(s, obfuscator_epochs=args.obfuscator_epochs)
    if args.attack_epochs:
        s = replace(s, attack_epochs=args.attack_epochs)
    if args.train_subset:
        s = replace(s, train_subset=args.train_subset, obfuscator_subset=args.train_subset,
                    attack_subset=args.train_subset)
    if args.test_subset:
        s = replace(s, test_subset=args.test_subset)
    return s


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def make_context(args: ReproduceSettings) -> Context:
    clock = Clock(None if args.budget_minutes is None else 60 * args.budget_minutes)
    scale = scale_from(args)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    configure_backends(device)
    warm_up(device)  # charged to the whole run, not to the first phase's speed probe
    precision = resolve_precision(args.precision, device)
    data = args.data if args.data is not None else default_source()
    ds, _ = load_data(data)  # decodes and caches the source once, up front
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = {"scale": scale.name, "data": str(data), "data_sha256": ds.source_sha256,
              "device": str(device), "precision": precision,
              "slots": [asdict(s) for s in scale.slots]}
    progress = Progress.open(out, header, args.resume)
    progress.data["invocations"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                         "budget_s": clock.budget_s, "device": str(device),
                                         "environment": environment()})
    progress.save()
    quiet = args.quiet or quiet_default()
    return Context(scale, out, str(data), device, precision, args.seed, args.compile,
                   args.threads, quiet, clock, progress, len(ds.train), len(ds.test))


def reproduce(settings: ReproduceSettings | None = None, **options: Any) -> Path:
    """The paper's experiments as `settings` (or ReproduceSettings(**options)) say, resumable;
    returns the run folder (tables.md, reproduce.md, progress.json and every phase's files)."""
    ctx = make_context(settings or ReproduceSettings(**options))
    phases = build_phases(ctx.scale.slots)
    try:
        run_phases(ctx, phases)
    finally:
        ctx.progress.data["invocations"][-1]["wall_s"] = round(ctx.clock.elapsed(), 2)
        ctx.progress.save()
        atomic_write(ctx.out / "reproduce.md", reproduce_markdown(ctx.progress.data))
    print(f"total {ctx.clock.elapsed():.0f}s of this invocation; results in {ctx.out}")
    return ctx.out


def run(args: argparse.Namespace) -> int:
    out = reproduce(from_args(ReproduceSettings, args))
    print((out / "tables.md").read_text())
    print((out / "reproduce.md").read_text())
    return 0
