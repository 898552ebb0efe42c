"""Does offloading pay? The device-budget curve from the runs of results/cpu/device_budget/run.sh.

For each device budget (the obfuscator's MACs at width multiplier α): the accuracy of the
device-alone classifier of that cost (`fastnet_device_*`, sends nothing) and of veil through
each cloud classifier (the obfuscator at α, 8-bit images, the frozen cloud model), both from
their runs' final test-split evaluation, with each veil point's privacy figures where they were
measured (the co-trained deobfuscator's SSIM from its run; linkage from `--linkage`
attacks.json files). A run that has not finished is listed as such, never extrapolated.

    python benchmarks/device_budget.py --runs ../budget/runs --out results/cpu/device_budget \
        [--veil-point 1.0=results/cpu/asymptote/metrics.jsonl] [--linkage A=attacks.json]

Writes device_budget.json, device_budget.md and device_budget.png (accuracy against device MACs,
log scale; one line for the device alone, one per cloud classifier for veil, the cloud
classifiers' plain accuracy as horizontal lines).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from veil.core.files import recorded_path
from veil.eval.tables import offloading_gain
from veil.models.classifiers import DEVICE_FASTNETS
from veil.models.complexity import count_macs, count_params, model_complexity
from veil.models.obfuscator import Obfuscator
from veil.report.results import write_result

SCHEMA = "veil.device_budget/1"
CLOUD = "fastnet"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def final_row(run: Path) -> dict[str, Any] | None:
    """The last epoch's row of a run, if the run finished (its model.pt exists)."""
    log = run / "metrics.jsonl"
    if not (run / "model.pt").exists() or not log.exists():
        return None
    rows = [r for r in read_jsonl(log) if r.get("epoch", 0) > 0]
    return rows[-1] if rows else None


def device_point(runs: Path, name: str, alpha: float) -> dict[str, Any]:
    row = final_row(runs / name)
    size = model_complexity(name)
    return {"alpha": alpha, "model": name, "params": size.params, "macs": size.macs,
            "accuracy": row["test_acc"] if row else None,
            "train_s": row["wall_s"] if row else None,
            "status": "finished" if row else "not finished"}


def veil_point(runs: Path, alpha: float, metrics: Path | None = None) -> dict[str, Any]:
    obfuscator = Obfuscator(alpha)
    run = runs / f"veil-a{alpha:g}"
    row = final_row(run) if metrics is None else read_jsonl(metrics)[-1]
    config = run / "config.yaml"
    epochs = (yaml.safe_load(config.read_text()) or {}).get("epochs") if config.exists() else None
    return {"alpha": alpha, "cloud": CLOUD, "params": count_params(obfuscator),
            "macs": count_macs(obfuscator),
            "accuracy": row["obfuscated_acc"] if row else None,
            "plain_cloud_accuracy": row["plain_acc"] if row else None,
            "cotrained_ssim": row["deobfuscator_ssim"] if row else None,
            "epochs": row["epoch"] if row else epochs,
            "train_s": row["wall_s"] if row else None,
            "source": str(metrics) if metrics else str(run / "metrics.jsonl"),
            "status": "finished" if row else "not finished",
            "progress": None if row else _progress(run, epochs)}


def _progress(run: Path, epochs: int | None) -> dict[str, Any] | None:
    """How far an unfinished run is: its last finished epoch and that epoch's accuracy."""
    log = run / "metrics.jsonl"
    rows = [r for r in read_jsonl(log) if r.get("epoch", 0) > 0] if log.exists() else []
    return ({"epoch": rows[-1]["epoch"], "of": epochs, "accuracy": rows[-1]["obfuscated_acc"]}
            if rows else None)


def linkage_of(path: Path) -> dict[str, Any]:
    """The strongest linkage attack of the first defense of a `veil attack` result."""
    data = json.loads(path.read_text())
    defense = (data.get("defenses") or data["rows"])[0]  # a finished result, or a partial one
    strongest = defense.get("strongest_linkage") or {}
    return {"source": recorded_path(path),
            "matcher_run": "link_matcher" in (defense.get("linkage") or {}),
            **{k: strongest.get(k) for k in ("attack", "top1", "class_top1", "median_rank")}}


def build(runs: Path, veil_points: dict[float, Path], linkage: dict[float, Path]
          ) -> dict[str, Any]:
    devices = [device_point(runs, name, alpha) for name, (alpha, _) in DEVICE_FASTNETS.items()]
    alphas = sorted({alpha for alpha, _ in DEVICE_FASTNETS.values()})
    veil = [veil_point(runs, a, veil_points.get(a)) for a in alphas]
    for point in veil:
        if point["alpha"] in linkage:
            point["linkage"] = linkage_of(linkage[point["alpha"]])
        device = next(d for d in devices if d["alpha"] == point["alpha"])
        if point["accuracy"] is not None and device["accuracy"] is not None:
            point.update(offloading_gain(point["accuracy"], device["accuracy"]))
    cloud = model_complexity(CLOUD)
    plain = next((p["plain_cloud_accuracy"] for p in veil if p["plain_cloud_accuracy"]), None)
    return {"schema": SCHEMA, "device_alone": devices, "veil": veil,
            "clouds": [{"model": CLOUD, "macs": cloud.macs, "params": cloud.params,
                        "plain_accuracy": plain}]}


def _pairs(specs: list[str]) -> dict[float, Path]:
    out = {}
    for spec in specs:
        alpha, _, path = spec.partition("=")
        out[float(alpha)] = Path(path)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--veil-point", nargs="*", default=[], metavar="ALPHA=METRICS_JSONL",
                   help="a veil point from another run's metrics (e.g. the shipped default)")
    p.add_argument("--linkage", nargs="*", default=[], metavar="ALPHA=ATTACKS_JSON")
    args = p.parse_args(argv)
    result = build(args.runs, _pairs(args.veil_point), _pairs(args.linkage))
    written = write_result(result, args.out)
    print(written[1].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
