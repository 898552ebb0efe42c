"""Write attacker_curves.json beside finished attack results (learning_speed.json from
`learning_speed.py`, baseline_attacks.json from `attack_baselines.py`), from the curves they hold;
the two benchmarks write it themselves since 2026-12-02.

    python benchmarks/attacker_curves.py results/cpu/default_attack/learning_speed.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from veil.attacks.fresh_decoder import attacker_curves
from veil.report.results import write_result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path)
    args = p.parse_args(argv)
    for path in args.results:
        data = json.loads(path.read_text())
        rows = data.get("runs") or data.get("baselines") or []
        curves = attacker_curves({r["name"]: r["attacker"]["all"] for r in rows})
        written = write_result(curves, path.parent)
        print(f"wrote {written[0]}: {len(rows)} defenses")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
