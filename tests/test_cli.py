"""The `veil` command line, called in-process through `veil.cli.main`."""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Sequence

import pytest
from PIL import Image

from veil.cli import COMMANDS, main
from veil.models.registry import PAPER_CLASSIFIERS


def veil(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `veil argv`; returns (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's --help and usage errors
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help(capsys):
    code, out, _ = veil(["--help"], capsys)
    assert code == 0
    assert "models" in out and "data" in out


def test_no_command_prints_help(capsys):
    code, out, _ = veil([], capsys)
    assert code == 0 and "usage: veil" in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_subcommand_help(name, capsys):
    if importlib.util.find_spec(COMMANDS[name][0]) is None:
        pytest.skip(f"`veil {name}` is not built yet")
    code, out, _ = veil([name, "--help"], capsys)
    assert code == 0
    assert f"usage: veil {name}" in out


@pytest.mark.slow
def test_models_writes_json_and_markdown(tmp_path, capsys):
    code, out, _ = veil(["models", "--out", str(tmp_path / "m")], capsys)
    assert code == 0
    report = json.loads((tmp_path / "m" / "models.json").read_text())
    assert [r["classifier"] for r in report["overhead"]] == list(PAPER_CLASSIFIERS)
    assert all(abs(r["flops_diff_pp"]) <= 0.3 for r in report["overhead"])
    assert report["obfuscator"]["params"] == 324_518
    markdown = (tmp_path / "m" / "models.md").read_text()
    for name in PAPER_CLASSIFIERS:
        assert f"| {name} |" in markdown and f"| {name} |" in out
    assert "| fastnet_tiny | classifier |" in markdown


def test_data_info_on_the_sample(capsys):
    code, out, _ = veil(["data", "info", "--data", "sample"], capsys)
    assert code == 0
    assert "200 images (20 per class)" in out and "32x32 RGB" in out and "airplane" in out


def test_data_info_caches_on_first_use(tmp_path, capsys):
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            (tmp_path / "mini" / split / "cat").mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), (i, i, i)).save(buf, format="PNG")
            (tmp_path / "mini" / split / "cat" / f"{i}.png").write_bytes(buf.getvalue())
    code, out, _ = veil(["data", "--data", str(tmp_path / "mini")], capsys)
    assert code == 0 and "3 images (3 per class)" in out and "decoded and cached" in out
    code, out, _ = veil(["data", "--data", str(tmp_path / "mini")], capsys)
    assert code == 0 and "read from the cache" in out


def test_data_on_a_missing_source_is_a_clear_error(tmp_path, capsys):
    code, _, err = veil(["data", "--data", str(tmp_path / "nowhere")], capsys)
    assert code == 2
    assert "veil data: error: data source not found" in err


def test_unknown_data_action_is_a_usage_error(capsys):
    code, _, err = veil(["data", "prepare-everything"], capsys)
    assert code == 2 and "invalid choice" in err


def test_a_package_missing_inside_a_command_names_the_extra(monkeypatch, capsys):
    from veil.eval import models_cli

    def needs_matplotlib(args):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(models_cli, "run", needs_matplotlib)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'veil[eval]'" in err and "Traceback" not in err


def test_a_missing_package_that_is_no_extra_is_not_disguised(monkeypatch):
    from veil.eval import models_cli

    def needs_nothing_known(args):
        raise ModuleNotFoundError("No module named 'veil_nonexistent'", name="veil_nonexistent")

    monkeypatch.setattr(models_cli, "run", needs_nothing_known)
    with pytest.raises(ModuleNotFoundError, match="veil_nonexistent"):
        main(["models"])
