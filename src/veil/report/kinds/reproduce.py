"""reproduce.md: what a `veil reproduce` run did, phase by phase, from its progress.json alone."""

from __future__ import annotations

from typing import Any

from ..registry import Kind, register

SCHEMA = "veil.reproduce/1"


def reproduce_markdown(progress: dict[str, Any]) -> str:
    rows = []
    for name, p in progress["phases"].items():
        r = p.get("result") or {}
        plan = r.get("plan") or {}
        epochs = r.get("epochs")
        shown = "–" if epochs is None else f"{epochs} / {plan.get('default_epochs', epochs)}"
        speed = plan.get("images_per_s")
        rows.append(f"| {name} | {p.get('status', '–')} | {shown} | "
                    f"{'–' if speed is None else f'{speed:,.0f}'} | {p.get('wall_s', '–')} |")
    slots = ", ".join(f"{s['name']} = {s['model']} (seed {s['seed']})" for s in progress["slots"])
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


# progress.json is the run's state, rewritten as it goes; its page keeps the name reproduce.md
REPRODUCE = register(Kind(SCHEMA, "progress", reproduce_markdown, page="reproduce"))
