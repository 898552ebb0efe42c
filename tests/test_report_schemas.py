"""`veil report` regenerates every kind of result JSON veil writes, from the JSON alone; the
committed results/ tree is what it renders, holds no absolute path, and only known schemas."""

from __future__ import annotations

import json
import re
import shutil
from functools import cache
from pathlib import Path

import pytest

from conftest import REPO
from veil.models.complexity import models_report
from veil.report.paths import ABSOLUTE
from veil.report.registry import kinds
from veil.report.results import regenerate, result_files, write_result

DATA = Path(__file__).parent / "data"
RESULTS = REPO / "results"
DEMO = {"schema": "veil.demo/1", "images": 200, "plain_accuracy": 0.91,
        "obfuscated_accuracy_over_http": 0.85, "mean_bytes_sent_per_image": 2171.7,
        "pretrained": "default", "trained": True}


@cache
def committed() -> dict[str, Path]:
    """One committed result file of each schema found under results/."""
    found: dict[str, Path] = {}
    for path in result_files(RESULTS):
        found.setdefault(json.loads(path.read_text())["schema"], path)
    return found


def example(schema: str) -> dict:
    """A result of each schema: stored test data, committed results, or made here."""
    files = {"veil.eval.tables/1": DATA / "tables.json", "veil.attacks/1": DATA / "attacks.json"}
    if schema in files or schema in committed():
        return json.loads(files.get(schema, committed().get(schema)).read_text())
    return {"veil.models/1": models_report, "veil.demo/1": lambda: DEMO}[schema]()


@pytest.mark.slow
@pytest.mark.parametrize("schema", sorted(kinds()))
def test_each_registered_schema_renders_a_stored_example(schema, tmp_path):
    result = example(schema)
    assert result["schema"] == schema and re.fullmatch(r"veil\.[a-z_.]+/\d+", schema)
    kind = kinds()[schema]
    (tmp_path / f"{kind.stem}.json").write_text(json.dumps(result))
    written = regenerate(tmp_path)
    assert written[0] == tmp_path / f"{kind.page or kind.stem}.md"
    assert written[0].read_text().strip() and all(p.exists() for p in written)


def test_every_result_under_results_has_a_registered_schema():
    schemas = {p: json.loads(p.read_text()).get("schema") for p in result_files(RESULTS)}
    assert len(schemas) > 60 and set(schemas.values()) <= set(kinds()), schemas


@pytest.mark.slow
def test_report_on_a_copy_of_results_changes_nothing(tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(RESULTS, copy, ignore=shutil.ignore_patterns("*.pt", "*.npz"))
    written = regenerate(copy)
    assert written and all(p.is_relative_to(copy) for p in written)
    changed = [p for p in written if p.read_bytes() != (RESULTS / p.relative_to(copy)).read_bytes()]
    assert not changed, f"veil report rewrote {len(changed)} files differently: {changed[:5]}"
    assert regenerate(copy) == written  # and a second run writes the same files


def test_an_unknown_or_absent_schema_is_one_line_naming_the_file(tmp_path, capsys):
    shutil.copy(DATA / "attacks.json", tmp_path / "attacks.json")
    (tmp_path / "other.json").write_text(json.dumps({"schema": "someone-else/1"}))
    code, err = _report(tmp_path, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'other.json'}: unknown result schema 'someone-else/1'" in err
    assert not (tmp_path / "attacks.md").exists()  # every file is checked before any is written
    (tmp_path / "other.json").write_text(json.dumps({"no": "schema"}))
    code, err = _report(tmp_path, capsys)
    assert code == 2 and "other.json: unknown result schema None" in err


@pytest.mark.slow
def test_zoo_cards_are_not_results_and_are_left_alone(tmp_path):
    shutil.copy(DATA / "attacks.json", tmp_path / "attacks.json")
    card = '{"name": "default", "metrics": {}}\n'
    for name in ("default.card.json", "card_measured.json"):
        (tmp_path / name).write_text(card)
    assert {p.name for p in regenerate(tmp_path) if p.suffix == ".md"} == {"attacks.md"}
    assert (tmp_path / "default.card.json").read_text() == card


def test_renamed_schemas_still_render(tmp_path):
    result = {**example("veil.blackbox/1"), "schema": "veil-blackbox/1"}
    (tmp_path / "blackbox.json").write_text(json.dumps(result))
    assert [p.name for p in regenerate(tmp_path)] == ["blackbox.md"]


def test_a_folder_without_results_names_the_schemas_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="veil.models/1"):
        regenerate(tmp_path)


# --- no absolute path in results/ (issue 52 §1) -------------------------------------------------
def _text(path: Path) -> str | None:
    raw = path.read_bytes()
    if b"\0" in raw:
        return None  # a checkpoint (hashed, binary), a figure
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def test_no_file_under_results_holds_an_absolute_path():
    found = {str(p.relative_to(REPO)): ABSOLUTE.findall(body)[:2]
             for p in sorted(RESULTS.rglob("*")) if p.is_file()
             and (body := _text(p)) is not None and ABSOLUTE.search(body)}
    assert not found, found


def test_the_writer_makes_absolute_paths_portable(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    result = {**DEMO, "pretrained": f"{repo}/zoo/default.pt",
              "note": f"data {tmp_path}/shared/data/c.zip, weights /home/someone/w.pt."}
    json_path = write_result(result, repo / "results" / "demo")[0]
    written = json.loads(json_path.read_text())
    assert written["pretrained"] == "zoo/default.pt"
    assert written["note"] == "data ../shared/data/c.zip, weights w.pt."
    assert not ABSOLUTE.search((json_path.parent / "demo.md").read_text())


# --- hostile result files (issue 50 §8-9) -------------------------------------------------------
def _report(target, capsys) -> tuple[int, str]:
    from veil.cli import main

    code = main(["report", str(target)])
    return code, capsys.readouterr().err


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_outside_a_repository_the_writer_makes_paths_relative_to_the_working_folder(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = {**DEMO, "pretrained": f"{tmp_path}/runs/obf/model.pt"}
    json_path = write_result(result, tmp_path / "out")[0]
    assert json.loads(json_path.read_text())["pretrained"] == "runs/obf/model.pt"
