"""The phases of `veil reproduce`: train a classifier or an obfuscator (within its share of the
budget, resumable), evaluate the tables, attack, report."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..attacks import AttackBudget, AttackSetup, loaded_defense, run_attack_suite
from ..core.files import atomic_write
from ..core.runtime import (
    environment,
    seed_everything,
)
from ..eval.tables import evaluate_tables
from ..models import create_model
from ..models.complexity import count_params
from ..report.figures import pareto_front
from ..report.kinds.reproduce import reproduce_markdown
from ..report.results import write_result
from ..run_inputs import LoadedClassifier, LoadedObfuscator, load_models
from ..train import classifier as clf
from ..train import obfuscator as obf
from ..train.classifier import train_classifier
from ..train.common import MetricsLog, config_from_dict, resumable_states
from ..train.obfuscator import train_obfuscator
from .context import Context
from .plan import Phase, Slot, build_phases
from .reproduce_budget import (
    DECODER_GUESS,
    EpochPlan,
    checkpoint_seconds,
    classifier_speed,
    decoder_speed,
    guessed_speed,
    obfuscator_speed,
    plan_epochs,
    warm_start_epochs_equivalent,
)

ATTACKS = ["cotrained", "decoder"]


def attack_file(ctx: Context, slot: Slot) -> Path:
    return ctx.out / "attacks" / f"{slot.name}.json"


def _train_phase(ctx: Context, phase: Phase, make: Callable[[], tuple[Any, EpochPlan]],
                 config_cls: type, train: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Start or continue a training run folder; returns the phase's result record."""
    run_dir = ctx.run_dir(phase.kind, phase.slot)
    record = ctx.progress.phase(phase.name)
    resumable = (record.get("status") == "running" and "config" in record
                 and bool(resumable_states(run_dir)))
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
            s.obfuscator_recipe, warm_start=dict(s.obfuscator_warm_start),
            classifier=str(ctx.checkpoint("classifier", slot)), data=ctx.data,
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
    n_train = ctx.n_train(config.train_subset)
    epoch_s = (n_train + ctx.n_test() / 1.5) / ips
    fixed = ctx.scale.fixed_s + warm_start_epochs_equivalent(config.warm_start) * n_train / ips
    epochs = plan_epochs(config.epochs, budget_s - probe_s, epoch_s, fixed,
                         minimum=ctx.scale.min_obfuscator_epochs)
    return EpochPlan(epochs, config.epochs, budget_s, ips, epoch_s, fixed, probe_s)


def load_slot_models(ctx: Context, slots: tuple[Slot, ...]
                     ) -> tuple[list[LoadedClassifier], list[LoadedObfuscator]]:
    """Trained classifiers (labelled by slot) and their obfuscators, paired by sha256."""
    ds, _ = ctx.eval_data()
    classifiers, obfuscators, _ = load_models(
        [ctx.checkpoint("classifier", s) for s in slots],
        [ctx.checkpoint("obfuscator", s) for s in slots], ds.classes, ctx.device,
        labels=[s.name for s in slots], add_missing=False)
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
    defense = loaded_defense(o)
    budget = attack_budget(ctx, budget_s)
    setup = AttackSetup(ds, data_info, classifier, list(ATTACKS), budget, ctx.device, ctx.seed,
                        ctx.quiet)
    result = run_attack_suite([defense], setup, log=lambda line: ctx.log("    " + line.strip()))
    path = attack_file(ctx, phase.slot)
    write_result(result, path.parent, path.stem)
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
    atomic_write(md, reproduce_markdown(ctx.progress.data))
    return {"files": [str(p) for p in [*written, md]]}


# --- the phase table: what each kind of phase runs, writes, reports and weighs -------------------
def _checkpoint_outputs(ctx: Context, phase: Phase) -> list[Path]:
    return [ctx.checkpoint(phase.kind, phase.slot)]


def _classifier_weight(ctx: Context, phase: Phase) -> float:
    s, model = ctx.scale, phase.slot.model
    epoch_s = (ctx.n_train(s.train_subset) + ctx.n_test() / 3) / guessed_speed(model) + 0.3
    return s.epochs_for(model) * epoch_s + s.fixed_s


def _obfuscator_weight(ctx: Context, phase: Phase) -> float:
    s, n_train = ctx.scale, ctx.n_train(ctx.scale.obfuscator_subset)
    warm = warm_start_epochs_equivalent(dict(s.obfuscator_warm_start)) * n_train
    n = s.obfuscator_epochs * (n_train + ctx.n_test() / 1.5) + warm
    return n / guessed_speed(phase.slot.model, True) + s.fixed_s


def _attack_weight(ctx: Context, phase: Phase) -> float:
    s = ctx.scale
    n = s.attack_epochs * ctx.n_train(s.attack_subset) + 4 * ctx.n_test()
    return n / DECODER_GUESS + s.fixed_s


def _metric(result: dict[str, Any], key: str) -> float:
    return (result.get("metrics") or {}).get(key, float("nan"))


@dataclass(frozen=True)
class PhaseKind:
    """One kind of phase: `run` it within a budget (seconds or None), the files it leaves
    (`outputs`: all present means done), its one-line `summary`, and its `weight`: a guess of
    its seconds, only to split the budget between the pending phases."""

    run: Callable[[Context, Phase, float | None], dict[str, Any]]
    outputs: Callable[[Context, Phase], list[Path]]
    summary: Callable[[dict[str, Any]], str]
    weight: Callable[[Context, Phase], float]


PHASE_KINDS: dict[str, PhaseKind] = {
    "classifier": PhaseKind(
        run_classifier, _checkpoint_outputs,
        lambda r: f"test acc {_metric(r, 'test_acc'):.2%}, {r['epochs']} epochs",
        _classifier_weight),
    "obfuscator": PhaseKind(
        run_obfuscator, _checkpoint_outputs,
        lambda r: (f"obfuscated acc {_metric(r, 'obfuscated_acc'):.2%}, deobfuscator SSIM "
                   f"{_metric(r, 'deobfuscator_ssim'):.3f}, {r['epochs']} epochs"),
        _obfuscator_weight),
    "tables": PhaseKind(
        run_tables, lambda ctx, _: [ctx.out / "tables.json", ctx.out / "tables.md"],
        lambda r: "wrote " + ", ".join(Path(p).name for p in r.get("files", [])),
        lambda ctx, _: 6 * len(ctx.scale.slots) * ctx.n_test() / 20_000 + 2 * ctx.scale.fixed_s),
    "attack": PhaseKind(
        run_attack, lambda ctx, phase: [attack_file(ctx, phase.slot)],
        lambda r: f"fresh decoder SSIM {r['decoder_ssim']:.3f}, {r['epochs']} epochs",
        _attack_weight),
    "report": PhaseKind(
        run_report,
        lambda ctx, _: [ctx.out / "attacks.json", ctx.out / "attacks.md", ctx.out / "reproduce.md"],
        lambda r: "wrote " + ", ".join(Path(p).name for p in r.get("files", [])),
        lambda ctx, _: 3 * ctx.scale.fixed_s),  # figures
}


def phase_outputs(ctx: Context, phase: Phase) -> list[Path]:
    return PHASE_KINDS[phase.kind].outputs(ctx, phase)


def summarize(phase: Phase, result: dict[str, Any]) -> str:
    return PHASE_KINDS[phase.kind].summary(result)


def phase_weight(ctx: Context, phase: Phase) -> float:
    return PHASE_KINDS[phase.kind].weight(ctx, phase)


def is_finished(ctx: Context, phase: Phase) -> bool:
    return ctx.progress.phase(phase.name).get("status") == "done" and outputs_exist(ctx, phase)


def outputs_exist(ctx: Context, phase: Phase) -> bool:
    return all(p.exists() for p in phase_outputs(ctx, phase))
