"""Markdown of `veil models` results (models.json): the zoo's sizes, the obfuscator's overhead."""

from __future__ import annotations

from typing import Any

from ...core.markdown import table
from ...models.complexity import SCHEMA
from ..registry import Kind, register


def overhead_markdown(report: dict[str, Any]) -> list[str]:
    header = ["classifier", "params", "MACs", "FLOPs overhead %", "paper", "diff (pp)",
              "params overhead %", "paper", "diff (pp)"]
    rows = [[r["classifier"], f"{r['params']:,}", f"{r['macs']:,}",
             f"{r['flops_overhead_pct']:.2f}", f"{r['paper_flops_overhead_pct']:.1f}",
             f"{r['flops_diff_pp']:+.2f}", f"{r['params_overhead_pct']:.2f}",
             f"{r['paper_params_overhead_pct']:.1f}", f"{r['params_diff_pp']:+.2f}"]
            for r in report["overhead"]]
    return table(header, rows)


def models_markdown(report: dict[str, Any]) -> list[str]:
    rows = [[m["name"], m["kind"], f"{m['params']:,}", f"{m['macs']:,}"]
            for m in report["models"]]
    return table(["model", "kind", "params", "MACs"], rows, text_columns=2)


def report_markdown(report: dict[str, Any]) -> str:
    obf = report["obfuscator"]
    lines = [
        "# Model complexity",
        "",
        f"Counted {report['counting']}.",
        "",
        "## Obfuscator overhead (Table 1)",
        "",
        f"Obfuscator: {obf['params']:,} parameters (paper: {obf['paper_params']:,}), "
        f"{obf['macs']:,} MACs (paper: about {obf['paper_macs']:.1e}).".replace("e+0", "e"),
        "",
        "Overhead = obfuscator / classifier in %; diff = ours - the paper's, in percentage points"
        + ("." if report["input_shape"][1] == 32 else " (the paper's figures are for 32x32)."),
        "",
        *overhead_markdown(report),
        "",
        "## All registry models",
        "",
        *models_markdown(report),
        "",
        *[f"- {reason}" for reason in report.get("refused", {}).values()],
    ]
    return "\n".join(lines)


MODELS = register(Kind(SCHEMA, "models", report_markdown))
