"""Issue 42 §2: the levers against linkage side by side, and their Pareto figure.

Each point is one defense as `veil attack` scored it (an attacks.json, and optionally the
metrics.jsonl of the run that trained it): accuracy on the full test split, the strongest
linkage attack measured (top-1 among the gallery, and within the true class), and the strongest
reconstruction measured (fresh decoders when that attack ran, else the co-trained
deobfuscator's SSIM from the run's last epoch, labelled as such). A point whose learned matcher
was not run says so: its linkage figure is the operator's only, a lower bound on what an
attacker gets.

    python benchmarks/linkage_levers.py --out results/cpu/linkage/levers \
        --point "shipped default=defaults/attacks.json,reobfuscation/own/attacks.json#NAME" \
        --point "ft-control=levers/ft-control/attacks.json:levers/ft-control/metrics.jsonl" \
        [--baselines results/cpu/linkage/baselines/attacks.json] [--device-alone 0.8662]

(several attacks.json scorings of one defense are merged; results/cpu/linkage/levers/render.sh
holds the command that wrote the committed figure.) Writes levers.json, levers.md and
levers.png (accuracy against the strongest linkage top-1, log scale, chance and issue 42's
1 % bound marked; colour: reconstruction SSIM).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from veil.core.files import recorded_path
from veil.report.results import write_result

SCHEMA = "veil.linkage_levers/1"
TARGET_TOP1, TARGET_CLASS = 0.01, 0.05  # issue 42 §3


def _defense(attacks: Path, which: int | str) -> dict[str, Any]:
    defenses = json.loads(attacks.read_text())["defenses"]
    if isinstance(which, int):
        return defenses[which]
    return next(d for d in defenses if d["name"] == which)


def point(label: str, attacks: Path | list[tuple[Path, int | str]], metrics: Path | None,
          which: int = 0) -> dict[str, Any]:
    """One defense as a point of the comparison: from one attacks.json, or from several
    (attacks.json, defense) scorings of the same defense, their linkage attacks merged (the
    first one's accuracy and reconstruction)."""
    scorings = [(attacks, which)] if isinstance(attacks, Path) else attacks
    defense = _defense(*scorings[0])
    linkage = {}
    for path, chosen in scorings:
        linkage.update(_defense(path, chosen).get("linkage") or {})
    attacks = scorings[0][0]
    strongest = max(linkage.items(), key=lambda kv: kv[1]["top1"], default=(None, None))
    reconstruction = _reconstruction(defense, metrics)
    return {"label": label, "defense": defense["name"], "kind": defense["kind"],
            "accuracy": defense["accuracy"],
            "linkage": None if strongest[0] is None else {
                "attack": strongest[0], "top1": strongest[1]["top1"],
                "class_top1": strongest[1]["class_top1"], "gallery": strongest[1]["gallery"],
                "matcher_run": "link_matcher" in linkage,
                "reobfuscation_run": "link_reobfuscate" in linkage,
                "matcher_stopped": ((linkage.get("link_matcher") or {}).get("curve") or {})
                .get("stopped")},
            "reconstruction": reconstruction,
            "source": " + ".join(recorded_path(path) for path, _ in scorings)}


def _reconstruction(defense: dict[str, Any], metrics: Path | None) -> dict[str, Any] | None:
    """The strongest of what `veil attack` measured (fresh decoders, inversion, the
    eavesdropper's plain view) and the co-trained deobfuscator of the run's last epoch."""
    candidates = []
    strongest = defense.get("strongest")
    if strongest and strongest.get("ssim") is not None:
        candidates.append({"ssim": strongest["ssim"], "by": strongest["attack"]})
    if metrics is not None:
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        if rows and "deobfuscator_ssim" in rows[-1]:
            candidates.append({"ssim": rows[-1]["deobfuscator_ssim"],
                               "by": "co-trained deobfuscator"})
    return max(candidates, key=lambda c: c["ssim"], default=None)


def baseline_points(attacks: Path) -> list[dict[str, Any]]:
    n = len(json.loads(attacks.read_text())["defenses"])
    return [point(f"baseline: {d}", attacks, None, i) for i, d in enumerate(
        json.loads(attacks.read_text())["defenses"][j]["name"] for j in range(n))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--point", action="append", default=[],
                   metavar="LABEL=ATTACKS[#DEFENSE][,ATTACKS[#DEFENSE]...][:METRICS]",
                   help="one defense; several attacks.json scorings of it are merged")
    p.add_argument("--baselines", type=Path, default=None, metavar="ATTACKS_JSON")
    p.add_argument("--device-alone", type=float, default=None, metavar="ACCURACY")
    args = p.parse_args(argv)
    points = []
    for spec in args.point:  # LABEL=ATTACKS[#DEFENSE][,ATTACKS[#DEFENSE]...][:METRICS]
        label, _, files = spec.partition("=")
        attacks, _, metrics = files.partition(":")
        scorings = [(Path(path), name or 0) for path, _, name in
                    (part.partition("#") for part in attacks.split(","))]
        points.append(point(label, scorings, Path(metrics) if metrics else None))
    if args.baselines is not None:
        points += baseline_points(args.baselines)
    result = {"schema": SCHEMA, "points": points, "device_alone": args.device_alone,
              "bounds": {"top1": TARGET_TOP1, "class_top1": TARGET_CLASS}}
    written = write_result(result, args.out)
    print(written[1].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
