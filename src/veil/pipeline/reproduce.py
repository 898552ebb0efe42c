"""`veil reproduce`: the paper's experiments in one resumable command.

Trains the five classifiers of the paper (VGG-19, ResNet-18 with seeds 0 and 1, ResNet-50,
GoogLeNet), an obfuscator for each (fast recipe), then evaluates Tables 1-3 (the full 5x5
transfer matrix) and a fresh-decoder attack on every obfuscator. Phases, in order:

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
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..attacks import AttackBudget, AttackSetup, obfuscator_defense, run_attack_suite
from ..core.files import atomic_write
from ..core.options import add_data, add_device, add_quiet, add_threads
from ..core.runtime import environment, quiet_default, resolve_device, seed_everything
from ..data import Dataset
from ..eval.report import write_result
from ..eval.tables import evaluate_tables
from ..loading import (
    LoadedClassifier,
    LoadedObfuscator,
    load_classifiers,
    load_data,
    load_obfuscators,
    pair_with_classifiers,
)
from ..models import create_model
from ..models.complexity import count_params
from ..report.figures import pareto_front
from ..train import classifier as clf
from ..train import obfuscator as obf
from ..train.classifier import train_classifier
from ..train.obfuscator import train_obfuscator
from ..train.runs import MetricsLog, config_from_dict
from .reproduce_budget import (
    DECODER_GUESS,
    Clock,
    EpochPlan,
    Probe,
    checkpoint_seconds,
    classifier_speed,
    decoder_speed,
    guessed_speed,
    obfuscator_speed,
    plan_epochs,
    share,
    warm_up,
)

SCHEMA = "reproduce-progress/1"  # not "veil.*": `veil report DIR` skips it
PROGRESS = "progress.json"
ATTACKS = ["cotrained", "decoder"]
DEFAULT_OUT = "results/reproduce"


# --- what runs at each scale ----------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """One of the paper's five classifiers: a name used for folders and labels, the zoo model
    that fills it at this scale, and its seed."""

    name: str
    model: str
    seed: int


@dataclass(frozen=True)
class Scale:
    name: str
    slots: tuple[Slot, ...]
    classifier_epochs: dict[str, int]  # by zoo model
    classifier_batch: int
    obfuscator_epochs: int
    obfuscator_batch: int
    attack_epochs: int
    attack_batch: int
    train_subset: int | None  # classifier training images (None: all)
    obfuscator_subset: int | None  # obfuscator training images
    attack_subset: int | None  # training images the attacker queries
    test_subset: int | None  # test images for per-epoch and final evaluation
    probe: Probe = field(default_factory=Probe)
    fixed_s: float = 5.0  # per phase: loading data and models, the final checkpoint
    min_classifier_epochs: int = 1  # the budget never plans fewer (see plan_epochs)
    min_obfuscator_epochs: int = 1

    def epochs_for(self, model: str) -> int:
        return self.classifier_epochs.get(model, 1)


PAPER_SLOTS = (Slot("vgg19", "vgg19", 0), Slot("resnet18-s0", "resnet18", 0),
               Slot("resnet18-s1", "resnet18", 1), Slot("resnet50", "resnet50", 0),
               Slot("googlenet", "googlenet", 0))
# Small stand-ins, one per paper slot (resnets for the residual slots), distinct seeds.
TINY_SLOTS = (Slot("vgg19", "fastnet_tiny", 0), Slot("resnet18-s0", "resnet9_tiny", 0),
              Slot("resnet18-s1", "resnet9_tiny", 1), Slot("resnet50", "resnet9_tiny", 2),
              Slot("googlenet", "fastnet_tiny", 1))

SCALES: dict[str, Scale] = {
    # About 10 min on one H100 at the speeds measured there (reproduce_budget's guesses), data
    # decoding included; --budget-minutes scales the epochs down to fit.
    "paper": Scale("paper", PAPER_SLOTS,
                   {"vgg19": 25, "resnet18": 25, "resnet50": 15, "googlenet": 12},
                   classifier_batch=512, obfuscator_epochs=4, obfuscator_batch=256,
                   attack_epochs=3, attack_batch=256, train_subset=None, obfuscator_subset=None,
                   attack_subset=None, test_subset=None, probe=Probe(3, 8),
                   # vgg19 learnt nothing in one one-cycle epoch (results/paper); obfuscators
                   # are near 45 % after one epoch and 60 % after three (results/gpu)
                   min_classifier_epochs=5, min_obfuscator_epochs=3),
    "tiny": Scale("tiny", TINY_SLOTS, {}, classifier_batch=64, obfuscator_epochs=1,
                  obfuscator_batch=32, attack_epochs=1, attack_batch=32, train_subset=512,
                  obfuscator_subset=64, attack_subset=64, test_subset=64,
                  probe=Probe(0, 1, max_batch=8), fixed_s=1.0),
}


# --- phases ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Phase:
    name: str
    kind: str  # classifier, obfuscator, tables, attack, report
    slot: Slot | None = None
    depends: tuple[str, ...] = ()


def build_phases(slots: tuple[Slot, ...]) -> list[Phase]:
    classifiers = [Phase(f"classifier:{s.name}", "classifier", s) for s in slots]
    obfuscators = [Phase(f"obfuscator:{s.name}", "obfuscator", s, (f"classifier:{s.name}",))
                   for s in slots]
    tables = Phase("tables", "tables", None,
                   tuple(p.name for p in classifiers + obfuscators))
    attacks = [Phase(f"attack:{s.name}", "attack", s,
                     (f"classifier:{s.name}", f"obfuscator:{s.name}")) for s in slots]
    report = Phase("report", "report", None, ("tables", *(p.name for p in attacks)))
    return [*classifiers, *obfuscators, tables, *attacks, report]


class Progress:
    """DIR/progress.json: the run's settings and every phase's record, written atomically."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    @classmethod
    def open(cls, out: Path, header: dict[str, Any], resume: bool) -> Progress:
        path = out / PROGRESS
        if not path.exists():
            progress = cls(path, {"schema": SCHEMA, **header, "invocations": [], "plans": {},
                                  "phases": {}})
            progress.save()
            return progress
        if not resume:
            raise ValueError(f"{out} already holds a reproduce run ({PROGRESS}); pass --resume "
                             f"to continue it or choose another --out")
        data = json.loads(path.read_text())
        for key in ("scale", "data_sha256"):
            if data.get(key) != header[key]:
                raise ValueError(f"{path}: the run was started with {key} "
                                 f"{data.get(key)!r}, not {header[key]!r}; resume it with the "
                                 f"same --scale and --data or choose another --out")
        return cls(path, data)

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=1) + "\n")

    def phase(self, name: str) -> dict[str, Any]:
        return self.data["phases"].get(name, {})

    def update(self, name: str, **values: Any) -> None:
        self.data["phases"].setdefault(name, {}).update(values)
        self.save()


@dataclass
class Context:
    """Everything a phase needs."""

    scale: Scale
    out: Path
    data: str
    device: torch.device
    precision: str
    seed: int
    compile: bool
    threads: int | None
    quiet: bool
    clock: Clock
    progress: Progress
    train_images: int
    test_images: int
    log: Callable[[str], None] = print
    _data_cache: tuple[Dataset, dict[str, Any]] | None = None

    def run_dir(self, kind: str, slot: Slot) -> Path:
        return self.out / f"{kind}s" / slot.name

    def checkpoint(self, kind: str, slot: Slot) -> Path:
        return self.run_dir(kind, slot) / "model.pt"

    def eval_data(self) -> tuple[Dataset, dict[str, Any]]:
        if self._data_cache is None:
            self._data_cache = load_data(self.data, self.scale.test_subset, self.seed)
        return self._data_cache

    def n_train(self, subset: int | None) -> int:
        return self.train_images if subset is None else min(subset, self.train_images)

    def n_test(self) -> int:
        subset = self.scale.test_subset
        return self.test_images if subset is None else min(subset, self.test_images)


# --- phase weights (a guess of each phase's seconds, only to split the budget) --------------
def phase_weight(ctx: Context, phase: Phase) -> float:
    s, n_test = ctx.scale, ctx.n_test()
    if phase.kind == "classifier":
        model = phase.slot.model
        epoch_s = (ctx.n_train(s.train_subset) + n_test / 3) / guessed_speed(model) + 0.3
        return s.epochs_for(model) * epoch_s + s.fixed_s
    if phase.kind == "obfuscator":
        n = ctx.n_train(s.obfuscator_subset) + n_test / 1.5
        return s.obfuscator_epochs * n / guessed_speed(phase.slot.model, True) + s.fixed_s
    if phase.kind == "attack":
        n = s.attack_epochs * ctx.n_train(s.attack_subset) + 4 * n_test
        return n / DECODER_GUESS + s.fixed_s
    if phase.kind == "tables":
        return 6 * len(s.slots) * n_test / 20_000 + 2 * s.fixed_s
    return 3 * s.fixed_s  # report: figures


def phase_budget(ctx: Context, pending: list[Phase]) -> float | None:
    """The share of the time left for pending[0], against all pending phases (None: no budget)."""
    remaining = ctx.clock.remaining()
    if remaining is None:
        return None
    return share(remaining, [phase_weight(ctx, p) for p in pending])


# --- running phases ---------------------------------------------------------------------------
def is_finished(ctx: Context, phase: Phase) -> bool:
    return ctx.progress.phase(phase.name).get("status") == "done" and outputs_exist(ctx, phase)


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
        result = RUNNERS[phase.kind](ctx, phase, budget_s)
        wall = time.perf_counter() - t0
        ctx.progress.update(phase.name, status="done", wall_s=round(wall, 2), result=result)
        ctx.log(f"    {summarize(phase, result)} ({wall:.0f}s)")


def outputs_exist(ctx: Context, phase: Phase) -> bool:
    return all(p.exists() for p in phase_outputs(ctx, phase))


def phase_outputs(ctx: Context, phase: Phase) -> list[Path]:
    if phase.kind in ("classifier", "obfuscator"):
        return [ctx.checkpoint(phase.kind, phase.slot)]
    if phase.kind == "attack":
        return [attack_file(ctx, phase.slot)]
    if phase.kind == "tables":
        return [ctx.out / "tables.json", ctx.out / "tables.md"]
    return [ctx.out / "attacks.json", ctx.out / "attacks.md", ctx.out / "reproduce.md"]


def attack_file(ctx: Context, slot: Slot) -> Path:
    return ctx.out / "attacks" / f"{slot.name}.json"


def summarize(phase: Phase, result: dict[str, Any]) -> str:
    m = result.get("metrics") or {}
    if phase.kind == "classifier":
        return f"test acc {m.get('test_acc', float('nan')):.2%}, {result['epochs']} epochs"
    if phase.kind == "obfuscator":
        return (f"obfuscated acc {m.get('obfuscated_acc', float('nan')):.2%}, deobfuscator SSIM "
                f"{m.get('deobfuscator_ssim', float('nan')):.3f}, {result['epochs']} epochs")
    if phase.kind == "attack":
        return f"fresh decoder SSIM {result['decoder_ssim']:.3f}, {result['epochs']} epochs"
    return "wrote " + ", ".join(Path(p).name for p in result.get("files", []))


def _train_phase(ctx: Context, phase: Phase, make: Callable[[], tuple[Any, EpochPlan]],
                 config_cls: type, train: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Start or continue a training run folder; returns the phase's result record."""
    run_dir = ctx.run_dir(phase.kind, phase.slot)
    record = ctx.progress.phase(phase.name)
    resumable = (record.get("status") == "running" and "config" in record
                 and (run_dir / "last.pt").exists())
    if resumable:
        config = relocate(ctx, phase, config_from_dict(config_cls, record["config"]))
        plan = record.get("plan", {})
        ctx.log(f"    resuming {run_dir} ({config.epochs} epochs as planned)")
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an earlier, now invalid or unfinished-at-epoch-0 run
        config, epoch_plan = make()
        plan = epoch_plan.as_dict()
        ctx.progress.update(phase.name, status="running", plan=plan, config=asdict(config),
                            result=None)
    row = train(config, resume=resumable, quiet=ctx.quiet)
    if not row:  # a resumed run whose last epoch had finished: metrics from its log
        rows = MetricsLog(run_dir / "metrics.jsonl").read()
        row = rows[-1] if rows else {}
    return {"checkpoint": str(ctx.checkpoint(phase.kind, phase.slot)), "epochs": config.epochs,
            "plan": plan, "resumed": resumable, "metrics": row}


def relocate(ctx: Context, phase: Phase, config: Any) -> Any:
    """A recorded config with its paths under this invocation's --out (the folder may have been
    moved, or the run resumed from another working directory)."""
    config = replace(config, out=str(ctx.run_dir(phase.kind, phase.slot)))
    if hasattr(config, "classifier"):
        config = replace(config, classifier=str(ctx.checkpoint("classifier", phase.slot)))
    return config


def run_classifier(ctx: Context, phase: Phase, budget_s: float | None
                   ) -> dict[str, Any]:
    def make() -> tuple[clf.ClassifierConfig, EpochPlan]:
        s, slot = ctx.scale, phase.slot
        config = clf.make_config(
            slot.model, data=ctx.data, out=str(ctx.run_dir("classifier", slot)),
            epochs=s.epochs_for(slot.model), batch_size=s.classifier_batch, seed=slot.seed,
            device=str(ctx.device), precision=ctx.precision, channels_last=True,
            compile=ctx.compile, train_subset=s.train_subset, test_subset=s.test_subset,
            threads=ctx.threads)
        plan = plan_classifier(ctx, config, budget_s)
        return replace(config, epochs=plan.epochs), plan

    return _train_phase(ctx, phase, make, clf.ClassifierConfig, train_classifier)


def plan_classifier(ctx: Context, config: clf.ClassifierConfig, budget_s: float | None
                    ) -> EpochPlan:
    if budget_s is None:
        return EpochPlan(config.epochs, config.epochs)
    t0 = time.perf_counter()
    ips = classifier_speed(config.model, config.batch_size, ctx.device, config.precision,
                           config.channels_last, ctx.scale.probe)
    probe_s = time.perf_counter() - t0
    ckpt = checkpoint_seconds(count_params(create_model(config.model)))
    epoch_s = (ctx.n_train(config.train_subset) + ctx.n_test() / 3) / ips + ckpt
    fixed = ctx.scale.fixed_s + ckpt + (60.0 if config.compile else 0.0)
    epochs = plan_epochs(config.epochs, budget_s - probe_s, epoch_s, fixed,
                         minimum=ctx.scale.min_classifier_epochs)
    return EpochPlan(epochs, config.epochs, budget_s, ips, epoch_s, fixed, probe_s)


def run_obfuscator(ctx: Context, phase: Phase, budget_s: float | None
                   ) -> dict[str, Any]:
    def make() -> tuple[obf.ObfuscatorConfig, EpochPlan]:
        s, slot = ctx.scale, phase.slot
        config = obf.make_config(
            "fast", classifier=str(ctx.checkpoint("classifier", slot)), data=ctx.data,
            out=str(ctx.run_dir("obfuscator", slot)), epochs=s.obfuscator_epochs,
            batch_size=s.obfuscator_batch, seed=slot.seed, device=str(ctx.device),
            precision=ctx.precision, channels_last=True, train_subset=s.obfuscator_subset,
            test_subset=s.test_subset, threads=ctx.threads)
        plan = plan_obfuscator(ctx, slot, config, budget_s)
        return replace(config, epochs=plan.epochs), plan

    return _train_phase(ctx, phase, make, obf.ObfuscatorConfig, train_obfuscator)


def plan_obfuscator(ctx: Context, slot: Slot, config: obf.ObfuscatorConfig,
                    budget_s: float | None) -> EpochPlan:
    if budget_s is None:
        return EpochPlan(config.epochs, config.epochs)
    t0 = time.perf_counter()
    ips = obfuscator_speed(slot.model, config, ctx.device, ctx.scale.probe)
    probe_s = time.perf_counter() - t0
    epoch_s = (ctx.n_train(config.train_subset) + ctx.n_test() / 1.5) / ips
    epochs = plan_epochs(config.epochs, budget_s - probe_s, epoch_s, ctx.scale.fixed_s,
                         minimum=ctx.scale.min_obfuscator_epochs)
    return EpochPlan(epochs, config.epochs, budget_s, ips, epoch_s, ctx.scale.fixed_s, probe_s)


def load_slot_models(ctx: Context, slots: tuple[Slot, ...]
                     ) -> tuple[list[LoadedClassifier], list[LoadedObfuscator]]:
    """Trained classifiers (labelled by slot) and their obfuscators, paired by sha256."""
    ds, _ = ctx.eval_data()
    classifiers = load_classifiers([ctx.checkpoint("classifier", s) for s in slots], ds.classes,
                                   ctx.device)
    for c, slot in zip(classifiers, slots, strict=True):
        c.label = slot.name
    obfuscators = load_obfuscators([ctx.checkpoint("obfuscator", s) for s in slots], ds.classes,
                                   ctx.device)
    pair_with_classifiers(obfuscators, classifiers, ds.classes, ctx.device, add_missing=False)
    return classifiers, obfuscators


def run_tables(ctx: Context, phase: Phase, budget_s: float | None
               ) -> dict[str, Any]:
    ds, data_info = ctx.eval_data()
    classifiers, obfuscators = load_slot_models(ctx, ctx.scale.slots)
    seed_everything(ctx.seed)
    result = evaluate_tables(classifiers, obfuscators, ds, data_info, ctx.device, ctx.seed)
    written = write_result(result, ctx.out)
    return {"files": [str(p) for p in written],
            "table1": [{k: r[k] for k in ("classifier", "plain_acc", "obfuscated_acc")}
                       for r in result["table1"]]}


def attack_budget(ctx: Context, budget_s: float | None) -> AttackBudget:
    """One attacker budget for every obfuscator: planned when no attack is finished yet, then
    kept, so that the merged attack result has a single budget."""
    plans, s = ctx.progress.data["plans"], ctx.scale
    finished = any(is_finished(ctx, p) for p in build_phases(s.slots) if p.kind == "attack")
    if "attack" not in plans or not finished:
        plans["attack"] = plan_attack(ctx, budget_s).as_dict()
        ctx.progress.save()
    return AttackBudget(epochs=plans["attack"]["epochs"], train_size=s.attack_subset,
                        batch_size=s.attack_batch, inversion_images=None)


def plan_attack(ctx: Context, budget_s: float | None) -> EpochPlan:
    s = ctx.scale
    if budget_s is None:
        return EpochPlan(s.attack_epochs, s.attack_epochs)
    t0 = time.perf_counter()
    ips = decoder_speed(s.attack_batch, ctx.device, s.probe)
    probe_s = time.perf_counter() - t0
    epoch_s = ctx.n_train(s.attack_subset) / ips
    fixed = s.fixed_s + 4 * ctx.n_test() / ips
    epochs = plan_epochs(s.attack_epochs, budget_s - probe_s, epoch_s, fixed)
    return EpochPlan(epochs, s.attack_epochs, budget_s, ips, epoch_s, fixed, probe_s)


def run_attack(ctx: Context, phase: Phase, budget_s: float | None
               ) -> dict[str, Any]:
    ds, data_info = ctx.eval_data()
    (classifier,), (o,) = load_slot_models(ctx, (phase.slot,))
    info = o.info()
    defense = obfuscator_defense(o.label, o.obfuscator, o.deobfuscator,
                                 {k: info[k] for k in ("path", "sha256", "lam", "recipe",
                                                       "epochs", "train_subset")})
    budget = attack_budget(ctx, budget_s)
    setup = AttackSetup(ds, data_info, classifier, list(ATTACKS), budget, ctx.device, ctx.seed,
                        ctx.quiet)
    result = run_attack_suite([defense], setup, log=lambda line: ctx.log("    " + line.strip()))
    path = attack_file(ctx, phase.slot)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(result, indent=1, allow_nan=False) + "\n")
    scores = result["defenses"][0]["attacks"]
    return {"file": str(path), "epochs": budget.epochs,
            "plan": ctx.progress.data["plans"]["attack"],
            "decoder_ssim": scores["decoder"]["ssim"]["mean"],
            "cotrained_ssim": scores["cotrained"]["ssim"]["mean"]}


def merge_attacks(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One `veil attack` result from per-obfuscator ones (each scored on its own classifier)."""
    defenses = [d for part in parts for d in part["defenses"]]
    points = [(d["name"], d["strongest"]["ssim"], d["accuracy"]) for d in defenses
              if d["accuracy"] is not None]
    return {**parts[0], "environment": environment(), "classifier": None,
            "defenses": defenses, "pareto": pareto_front(points)}


def run_report(ctx: Context, phase: Phase, budget_s: float | None
               ) -> dict[str, Any]:
    parts = [json.loads(attack_file(ctx, s).read_text()) for s in ctx.scale.slots]
    written = write_result(merge_attacks(parts), ctx.out)
    md = ctx.out / "reproduce.md"
    md.write_text(reproduce_markdown(ctx.progress.data, ctx.scale))
    return {"files": [str(p) for p in [*written, md]]}


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "classifier": run_classifier, "obfuscator": run_obfuscator, "tables": run_tables,
    "attack": run_attack, "report": run_report,
}


# --- the run summary ---------------------------------------------------------------------------
def reproduce_markdown(progress: dict[str, Any], scale: Scale) -> str:
    rows = []
    for name, p in progress["phases"].items():
        r = p.get("result") or {}
        plan = r.get("plan") or {}
        epochs = r.get("epochs")
        shown = "–" if epochs is None else f"{epochs} / {plan.get('default_epochs', epochs)}"
        speed = plan.get("images_per_s")
        rows.append(f"| {name} | {p.get('status', '–')} | {shown} | "
                    f"{'–' if speed is None else f'{speed:,.0f}'} | {p.get('wall_s', '–')} |")
    slots = ", ".join(f"{s.name} = {s.model} (seed {s.seed})" for s in scale.slots)
    runs = progress.get("invocations", [])
    budgets = ", ".join("none" if r.get("budget_s") is None else f"{r['budget_s']:.0f}s"
                        for r in runs)
    lines = ["# veil reproduce", "",
             f"Scale `{progress['scale']}` on `{progress['device']}` ({progress['precision']}), "
             f"data `{progress['data']}` (sha256 `{progress['data_sha256'][:12]}`).", "",
             f"Slots: {slots}.", "",
             f"Invocations: {len(runs)}; time budgets: {budgets}.", "",
             "Results: [Tables 1-3](tables.md), [attacks](attacks.md).", "",
             "| phase | status | epochs (run / default) | measured img/s | wall s |",
             "|---|---|---:|---:|---:|", *rows, ""]
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=sorted(SCALES), default="paper",
                        help="paper (default): the paper's models on a GPU; tiny: stand-in "
                             "models and a few hundred images, minutes on a CPU")
    add_data(parser)
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"run and results folder (default: {DEFAULT_OUT})")
    parser.add_argument("--budget-minutes", type=float, metavar="M",
                        help="wall-time budget of this invocation; epochs are capped to fit "
                             "(default: no limit, the scale's default epochs)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out: skip finished phases")
    add_device(parser)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="auto (default): bf16 autocast on a GPU, fp32 on a CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the classifiers")
    parser.add_argument("--seed", type=int, default=0, help="seed of evaluation and attacks")
    g = parser.add_argument_group("overrides of the scale's defaults (the budget still caps "
                                  "epochs)")
    g.add_argument("--classifier-epochs", type=int, metavar="N")
    g.add_argument("--obfuscator-epochs", type=int, metavar="N")
    g.add_argument("--attack-epochs", type=int, metavar="N")
    g.add_argument("--train-subset", type=int, metavar="N",
                   help="training images for classifiers, obfuscators and attacks")
    g.add_argument("--test-subset", type=int, metavar="N")
    add_threads(parser)
    add_quiet(parser)


def scale_from(args: argparse.Namespace) -> Scale:
    s = SCALES[args.scale]
    for name in ("classifier_epochs", "obfuscator_epochs", "attack_epochs", "train_subset",
                 "test_subset", "budget_minutes"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
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


def configure_backends(device: torch.device, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def make_context(args: argparse.Namespace) -> Context:
    clock = Clock(None if args.budget_minutes is None else 60 * args.budget_minutes)
    scale = scale_from(args)
    device = resolve_device(args.device)
    configure_backends(device, args.threads)
    warm_up(device)  # charged to the whole run, not to the first phase's speed probe
    precision = resolve_precision(args.precision, device)
    data = args.data if args.data is not None else os.environ.get("VEIL_DATA", "cifar10")
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


def run(args: argparse.Namespace) -> int:
    ctx = make_context(args)
    phases = build_phases(ctx.scale.slots)
    try:
        run_phases(ctx, phases)
    finally:
        ctx.progress.data["invocations"][-1]["wall_s"] = round(ctx.clock.elapsed(), 2)
        ctx.progress.save()
        (ctx.out / "reproduce.md").write_text(reproduce_markdown(ctx.progress.data, ctx.scale))
    print((ctx.out / "tables.md").read_text())
    print((ctx.out / "reproduce.md").read_text())
    print(f"total {ctx.clock.elapsed():.0f}s of this invocation; results in {ctx.out}")
    return 0
