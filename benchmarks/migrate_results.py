"""One-off (issue 52 §1): give every result JSON under results/ its schema and make every text file
under results/ free of absolute machine paths. Run once from the repository root, then
`veil report results/`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from veil.report.figures import pareto_front
from veil.report.paths import portable, portable_text
from veil.report.registry import RENAMED, owned_elsewhere

ROOTS = (Path("/work/main"),)  # where the committed results were written
BY_NAME = [(r"adversarial_step", "veil.adversarial_step/1"),
           (r"learning_speed", "veil.learning_speed/1"),
           (r"baseline_attacks", "veil.baseline_attacks/1"),
           (r"blackbox_answers", "veil.blackbox_answers/1"),
           (r"blackbox_vs_whitebox", "veil.blackbox_vs_whitebox/1"),
           (r"blackbox_obfuscated", "veil.blackbox_obfuscated/1"),
           (r"blackbox_refine", "veil.blackbox_refine/1"),
           (r"jpeg_vs_lossless", "veil.jpeg_vs_lossless/1"),
           (r"lambda_sweep", "veil.lambda_sweep/1"), (r"edge.*", "veil.edge/1"),
           (r"kills", "veil.fault_kills/1"), (r"search", "veil.recipe_search/1"),
           (r"throughput.*", "veil.throughput/1"), (r"guards", "veil.serve_guards/1"),
           (r"protocols", "veil.serve_protocols/1"), (r"serve.*|run\d+", "veil.serve/1")]


def schema_for(path: Path, data: dict[str, Any]) -> str:
    if "schema" in data:
        return RENAMED.get(data["schema"], data["schema"])
    for pattern, schema in BY_NAME:
        if re.fullmatch(pattern, path.stem):
            return schema
    raise SystemExit(f"{path}: no schema for it")


def extras(path: Path, data: dict[str, Any]) -> None:
    """What a renderer needs that the benchmark kept out of its JSON."""
    if data["schema"] == "veil.recipe_search/1":
        data["meta"].setdefault("header", path.with_suffix(".md").read_text().splitlines()[0])
    if data["schema"] == "veil.lambda_sweep/1" and "points" not in data:
        baselines = json.loads((path.parent.parent / "baseline_attacks/baseline_attacks.json")
                               .read_text())["baselines"]
        data["points"] = sweep_points(data["runs"], baselines)


def sweep_points(runs: list[dict[str, Any]], baselines: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
    points = [{"name": r["name"], "kind": "obfuscator", "ssim": r["strongest_ssim"],
               "accuracy": r["obfuscated_acc"]} for r in runs]
    points += [{"name": b["name"], "kind": "baseline", "ssim": b["attacker"]["test_ssim"],
                "accuracy": b["accuracy"]} for b in baselines]
    front = set(pareto_front([(p["name"], p["ssim"], p["accuracy"]) for p in points]))
    return [{**p, "pareto": p["name"] in front} for p in points]


def migrate_json(path: Path) -> None:
    data = portable(json.loads(path.read_text()), ROOTS)
    if isinstance(data, dict) and not owned_elsewhere(path):
        data = {"schema": schema_for(path, data), **{k: v for k, v in data.items()
                                                     if k != "schema"}}
        extras(path, data)
        path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    else:
        path.write_text(portable_text(path.read_text(), ROOTS))


def text(path: Path) -> str | None:
    raw = path.read_bytes()
    if b"\0" in raw:
        return None  # a checkpoint: hashed, left as it is
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def main(folder: str = "results") -> int:
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.suffix == ".png":
            continue
        if path.suffix == ".json":
            migrate_json(path)
        elif (body := text(path)) is not None and portable_text(body, ROOTS) != body:
            path.write_text(portable_text(body, ROOTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
