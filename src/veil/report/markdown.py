"""Markdown pieces every result renders with: numbers, provenance lines, image grids."""

from __future__ import annotations

import math
from typing import Any

from .figures import decode_strip, slug


def pct(x: float | None) -> str:
    return "–" if x is None else "not a number" if not math.isfinite(x) else f"{100 * x:.2f}"


def mean_std(summary: dict[str, float] | None, digits: int = 2) -> str:
    if not summary:
        return "–"
    if not all(math.isfinite(summary[k]) for k in ("mean", "std")):
        return "not a number"
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def short(sha: str | None) -> str:
    return f"`{sha[:12]}`" if sha else "–"


def provenance(result: dict[str, Any]) -> list[str]:
    data, env = result["data"], result["environment"]
    subset = "" if data.get("test_subset") is None else f" (subset of {data['test_subset']})"
    hardware = env.get("gpu") or env.get("cpu", "unknown")
    jpeg = (" CIFAR-10 (JPEG-75): re-encoded, not the original pixels, so accuracies are a "
            "little lower than published CIFAR-10 numbers." if "jpeg" in data["name"].lower()
            else "")
    return [
        f"Data: `{data['source']}` ({data['name']}, sha256 {short(data.get('sha256'))}), "
        f"{data['test_images']} test images{subset}. Seed {result['seed']}.{jpeg}",
        "",
        f"Run on {hardware} ({result.get('device', 'cpu')}), torch {env['torch']}, "
        f"python {env['python']}, {env['date']}.",
    ]


def grid_figure_name(kind: str, name: str) -> str:
    return f"{kind}-{slug(name)}.png"


def grid_rows(grid: dict[str, Any]) -> list[tuple[str, Any]]:
    n = len(grid["indices"])
    return [(label, decode_strip(data, n)) for label, data in grid["rows"].items()]
