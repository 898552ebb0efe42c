"""`veil report` regenerates every kind of result JSON veil writes, from the JSON alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from veil.eval.schemas import _renderers, regenerate
from veil.models.complexity import models_report

DATA = Path(__file__).parent / "data"
DEMO = {"schema": "veil.demo/1", "images": 200, "plain_accuracy": 0.91,
        "obfuscated_accuracy_over_http": 0.85, "mean_bytes_sent_per_image": 2171.7,
        "pretrained": "default", "trained": True}


def example(schema: str) -> dict:
    """A result of each schema: stored test data, committed results, or made here."""
    files = {"veil.eval.tables/1": DATA / "tables.json", "veil.attacks/1": DATA / "attacks.json",
             "veil-attacker-curves/1":
                 REPO / "results/cpu/heldout/ensemble/attack-final/attacker_curves.json",
             "veil-blackbox/1": REPO / "results/cpu/blackbox/blackbox.json"}
    if schema in files:
        return json.loads(files[schema].read_text())
    return {"veil.models/1": models_report, "veil.demo/1": lambda: DEMO}[schema]()


@pytest.mark.parametrize("schema", sorted(_renderers()))
def test_report_regenerates_every_result_schema(schema, tmp_path, capsys):
    result = example(schema)
    assert result["schema"] == schema
    stem = _renderers()[schema][0]
    (tmp_path / f"{stem}.json").write_text(json.dumps(result))
    written = regenerate(tmp_path)
    markdown = (tmp_path / f"{stem}.md").read_text()
    assert written[0] == tmp_path / f"{stem}.md" and markdown.startswith("# ")
    assert all(p.exists() for p in written)


def test_the_committed_result_files_render_as_they_are(tmp_path):
    for schema in ("veil-blackbox/1", "veil-attacker-curves/1"):
        assert example(schema)  # still there, still parseable
    shutil.copy(DATA / "attacks.json", tmp_path / "attacks.json")
    (tmp_path / "progress.json").write_text(json.dumps({"schema": "reproduce-progress/1"}))
    (tmp_path / "other.json").write_text(json.dumps({"schema": "someone-else/1"}))
    written = regenerate(tmp_path)  # the two that are not veil results are left alone
    assert {p.name for p in written if p.suffix == ".md"} == {"attacks.md"}


def test_a_folder_without_results_names_the_schemas_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="veil.models/1"):
        regenerate(tmp_path)
