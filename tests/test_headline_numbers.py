"""The headline numbers in README.md and docs/results.md are the result files' and cards', not
hand-copied ones: each quoted number is checked against the JSON value it comes from."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO

CARDS = "src/veil/zoo/weights"
BUDGET = "results/cpu/device_budget/device_budget.json"
LINKAGE = "results/cpu/linkage"
DERIVED = f"{LINKAGE}/derived/away2/parent-holder/attacks.json"

# (Markdown file, where the number stands with {} for it, JSON file, JSON pointer, scale, format)
HEADLINES: list[tuple[str, str, str, str, float, str]] = [
    ("README.md", "keeps **{} %**", f"{CARDS}/default.card.json",
     "/metrics/obfuscated_acc_8bit", 100, ".2f"),
    ("README.md", "of its classifier's {} %", f"{CARDS}/default.card.json", "/metrics/plain_acc",
     100, ".2f"),
    ("README.md", "sends nothing and reaches **{} %**", BUDGET, "/device_alone/0/accuracy",
     100, ".2f"),
    ("README.md", "offloading gain is **{} points**",
     "results/cpu/device_budget/evaluate/tables.json", "/table1/0/device_alone/offloading_gain_pp",
     1, ".2f"),
    ("README.md", "the device alone still reaches {} %", BUDGET, "/device_alone/1/accuracy", 100,
     ".2f"),
    ("README.md", "at 2.6M {} %", BUDGET, "/device_alone/2/accuracy", 100, ".2f"),
    ("README.md", "reaches only {} %", BUDGET, "/veil/0/accuracy", 100, ".2f"),
    ("README.md", "**{} points** (α = 0.5", BUDGET, "/veil/0/offloading_gain_pp", 1, ".2f"),
    ("README.md", "(α = 0.5: {} %", BUDGET, "/veil/1/accuracy", 100, ".2f"),
    ("README.md", "%, {}). Negative", BUDGET, "/veil/1/offloading_gain_pp", 1, ".2f"),
    ("README.md", "**{} %** over six views", f"{CARDS}/cloudnet_s.card.json", "/metrics/plain_acc",
     100, ".2f"),
    ("README.md", "{} % one view", f"{CARDS}/cloudnet_s.card.json",
     "/metrics/plain_acc_one_view", 100, ".2f"),
    ("README.md", "16 epochs, 6.4 h): {} % over six views", "results/cpu/cloud/cloudnet_m/"
     "metrics.jsonl#-1", "/test_acc_views", 100, ".2f"),
    ("README.md", "veil against `cloudnet_s` keeps {} %", "results/cpu/cloud/tables/tables.json",
     "/table1/0/obfuscated_acc", 100, ".2f"),
    ("README.md", "SSIM {}, MS-SSIM", f"{LINKAGE}/defaults/attacks.json",
     "/defenses/0/eavesdropper/ssim/mean", 1, ".3f"),
    ("README.md", "MS-SSIM {} to the photo", f"{LINKAGE}/defaults/card_measured.json",
     "/privacy/what_is_sent/ms_ssim_to_photo", 1, ".3f"),
    ("README.md", "strongest reconstruction SSIM **{}**", f"{CARDS}/default.card.json",
     "/metrics/deobfuscator_ssim", 1, ".3f"),
    ("README.md", "takes the nearest: **{} %**", f"{LINKAGE}/reobfuscation/own/attacks.json",
     "/defenses/0/linkage/link_reobfuscate/top1", 100, ".0f"),
    ("README.md", "finds the photo first **{} %**", f"{LINKAGE}/defaults/attacks.json",
     "/defenses/0/linkage/link_operator/top1", 100, ".1f"),
    ("README.md", "weights link {} %", f"{LINKAGE}/reobfuscation/sibling/attacks.json",
     "/defenses/0/linkage/link_reobfuscate/top1", 100, ".1f"),
    ("README.md", "(`veil derive`, {} %)", DERIVED, "/defenses/0/accuracy", 100, ".2f"),
    ("README.md", "link {} % by re-obfuscation", DERIVED,
     "/defenses/0/linkage/link_reobfuscate/top1", 100, ".1f"),
    ("README.md", "classifier's features {} %, but a sibling", DERIVED,
     "/defenses/0/linkage/link_operator/top1", 100, ".1f"),
    ("README.md", "same parent links **{} %**", f"{LINKAGE}/derived/away3/population-holder/"
     "attacks.json", "/defenses/0/linkage/link_reobfuscate/top1", 100, ".1f"),
    ("README.md", "and {} % through a matcher", DERIVED, "/defenses/0/linkage/link_matcher/top1",
     100, ".1f"),
    ("docs/results.md", "re-obfuscation **{} %**, a matcher", DERIVED,
     "/defenses/0/linkage/link_reobfuscate/top1", 100, ".1f"),
    ("docs/results.md", "pairs until flat **{} %**", DERIVED,
     "/defenses/0/linkage/link_matcher/top1", 100, ".1f"),
    ("docs/results.md", "87.75 → **{} %**", f"{CARDS}/default.card.json",
     "/metrics/obfuscated_acc_8bit", 100, ".2f"),
    ("docs/results.md", "**{} / 83.48", BUDGET, "/device_alone/2/accuracy", 100, ".2f"),
    ("docs/results.md", "a gain of **{} points**", BUDGET, "/veil/0/offloading_gain_pp", 1, ".2f"),
    ("docs/results.md", "trained until flat (best validation point after 80,000 pairs, 954 s of "
     "one thread): **{} %**", f"{LINKAGE}/defaults/attacks.json",
     "/defenses/0/linkage/link_matcher/top1", 100, ".1f"),
    ("docs/results.md", "{} params", "results/models/models.json", "/obfuscator/params", 1, ","),
    ("docs/results.md", "{} MACs; overhead", "results/models/models.json", "/obfuscator/macs", 1,
     ","),
    ("docs/results.md", "googlenet: {} /", "results/models/models.json",
     "/overhead/0/flops_overhead_pct", 1, ".2f"),
    ("docs/results.md", "black box **{} %**", "results/cpu/blackbox/full/blackbox_vs_whitebox.json",
     "/blackbox_obfuscated_acc", 100, ".2f"),
    ("docs/results.md", "throughput median **{}**", "results/serve/protocols.json",
     "/median_ratio", 1, ".3f"),
    ("docs/results.md", "median throughput ratio **{}**", "results/serve/guards.json",
     "/median_ratio", 1, ".3f"),
]


@cache
def _json(path: str) -> Any:
    """A JSON file, or one row of a JSON-lines log (`metrics.jsonl#-1`: its last)."""
    file, _, row = path.partition("#")
    text = (REPO / file).read_text()
    if file.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()][int(row)]
    return json.loads(text)


def _at(document: Any, pointer: str) -> Any:
    for key in pointer.strip("/").split("/"):
        document = document[int(key)] if isinstance(document, list) else document[key]
    return document


def quoted(value: float, scale: float, spec: str) -> str:
    """A value as the prose writes it: scaled, formatted, with a typographic minus."""
    return format(value * scale if scale != 1 else value, spec).replace("-", "−")


@pytest.mark.parametrize(("markdown", "context", "source", "pointer", "scale", "spec"), HEADLINES,
                         ids=[f"{h[0]}:{h[2].rsplit('/', 2)[-2]}{h[3]}" for h in HEADLINES])
def test_a_headline_number_is_the_one_in_its_result_file(markdown, context, source, pointer,
                                                         scale, spec):
    text = " ".join((REPO / markdown).read_text().split())  # prose wraps lines anywhere
    expected = context.format(quoted(_at(_json(source), pointer), scale, spec))
    assert expected in text, f"{markdown} should say {expected!r} ({source}{pointer})"


def test_every_headline_source_is_committed():
    assert all(Path(REPO / source.partition("#")[0]).is_file() for _, _, source, *_ in HEADLINES)
