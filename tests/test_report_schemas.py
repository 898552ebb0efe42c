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


# --- hostile result files (issue 50 §8-9) -------------------------------------------------------
def _report(target, capsys) -> tuple[int, str]:
    from veil.cli import main

    code = main(["report", str(target)])
    return code, capsys.readouterr().err


@pytest.mark.hostile
@pytest.mark.timeout(30)
def test_a_result_that_is_a_device_or_a_fifo_is_refused_without_reading_it(tmp_path, capsys):
    import os

    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for target in (zero, fifo):
        code, err = _report(target, capsys)
        assert code == 2 and "not a result file (not a regular file)" in err, err
    (tmp_path / "attacks.json").write_text((DATA / "attacks.json").read_text())
    assert [p.name for p in regenerate(tmp_path)][0] == "attacks.md"  # the folder skips both


@pytest.mark.hostile
@pytest.mark.parametrize("damage", ["drop", "retype"])
def test_a_known_schema_with_a_missing_or_mistyped_field_is_one_line(tmp_path, capsys, damage):
    result = json.loads((DATA / "attacks.json").read_text())
    if damage == "drop":
        del result["defenses"][0]["accuracy"]
    else:
        result["defenses"] = "not a list"
    (tmp_path / "attacks.json").write_text(json.dumps(result))
    code, err = _report(tmp_path / "attacks.json", capsys)
    assert code == 2 and "a veil.attacks/1 result this version cannot render" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.hostile
def test_names_from_a_result_cannot_break_its_markdown_table(tmp_path):
    result = json.loads((DATA / "attacks.json").read_text())
    result["defenses"][0]["name"] = "evil | <script>alert(1)</script>\nrow\x1b[31m"
    (tmp_path / "attacks.json").write_text(json.dumps(result))
    regenerate(tmp_path)
    markdown = (tmp_path / "attacks.md").read_text()
    assert "<script>" not in markdown and "\x1b" not in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| evil")]
    assert rows and all("evil \\| &lt;script&gt;alert(1)&lt;/script&gt; row[31m" in r
                        for r in rows)


def test_not_a_number_is_rendered_as_such_not_as_nan_percent():
    from veil.report.markdown import mean_std, pct

    assert pct(float("nan")) == pct(float("inf")) == "not a number"
    assert mean_std({"mean": float("nan"), "std": 0.1}) == "not a number"
    assert pct(0.5) == "50.00" and pct(None) == "–"
