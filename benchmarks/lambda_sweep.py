"""The λ trade-off at the default's training length: one table and one figure from attack results.

Each obfuscator of the sweep is trained with the embedded default's recipe and schedule, λ alone
changed (`veil train obfuscator --config DEFAULT/config.yaml --lam L`), then attacked by
`benchmarks/learning_speed.py` (fresh U-Nets trained after the obfuscator is frozen, until their
validation curve is flat). This script merges those results (`learning_speed.json` files, one run
each or several), and writes OUT/lambda_sweep.{json,md} and OUT/tradeoff.png: accuracy against
the strongest attacker's SSIM, the larger of the fresh attacker's (on held-out test images) and
the co-trained deobfuscator's (on the full test split).

    python benchmarks/lambda_sweep.py --results A/learning_speed.json B/learning_speed.json \
        --out results/cpu/lambda_sweep
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from veil.report.figures import pareto_front
from veil.report.results import write_result


def sweep_rows(results: list[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows, environments = [], {}
    for path in results:
        data = json.loads(path.read_text())
        for run in data["runs"]:
            attacker, final = run["attacker"], run["final"]
            strongest = max(("fresh attacker", attacker["test_ssim"]),
                            ("co-trained deobfuscator", final["deobfuscator_ssim"]),
                            key=lambda pair: pair[1])
            rows.append({"name": f"λ={run['config']['lam']:g}", "lam": run["config"]["lam"],
                         "run": run["name"], "plain_acc": final["plain_acc"],
                         "obfuscated_acc": final["obfuscated_acc"],
                         "deobfuscator_ssim": final["deobfuscator_ssim"],
                         "attacker": {k: v for k, v in attacker.items() if k != "all"},
                         "strongest": strongest[0], "strongest_ssim": strongest[1],
                         "train_s": run["train_s"], "recipe": run["config"]["recipe"],
                         "epochs": run["config"]["epochs"]})
            environments[run["name"]] = data["environment"]
    rows.sort(key=lambda r: r["lam"])
    front = set(pareto_front([(r["name"], r["strongest_ssim"], r["obfuscated_acc"])
                              for r in rows]))
    for r in rows:
        r["pareto"] = r["name"] in front
    return rows, environments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", nargs="+", type=Path, required=True,
                        help="learning_speed.json files of the sweep's runs")
    parser.add_argument("--baselines", type=Path, default=None,
                        help="baseline_attacks.json (benchmarks/attack_baselines.py): baselines "
                             "under the same attackers, drawn beside the sweep")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows, environments = sweep_rows(args.results)
    points = [{"name": r["name"], "kind": "obfuscator", "ssim": r["strongest_ssim"],
               "accuracy": r["obfuscated_acc"]} for r in rows]
    if args.baselines:
        points += [{"name": b["name"], "kind": "baseline", "ssim": b["attacker"]["test_ssim"],
                    "accuracy": b["accuracy"]}
                   for b in json.loads(args.baselines.read_text())["baselines"]]
    front = set(pareto_front([(p["name"], p["ssim"], p["accuracy"]) for p in points]))
    for point in points:
        point["pareto"] = point["name"] in front
    written = write_result({"schema": "veil.lambda_sweep/1", "runs": rows,
                            "environment": environments, "points": points}, args.out)
    print(written[1].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
