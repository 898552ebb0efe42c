"""`veil demo` (what `make demo` runs) end to end on loopback."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from veil import zoo
from veil.cli import main


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["images"] == 200
    assert 0 <= summary["obfuscated_accuracy_over_http"] <= 1
    assert summary["mean_bytes_sent_per_image"] > 0
    with Image.open(tmp_path / "demo_grid.png") as im:
        assert im.width >= 10 * 32 * 4 and im.height >= 3 * 32 * 4
    assert (tmp_path / "obfuscator.onnx").stat().st_size > 1_000_000
    assert "Server stopped." in printed
    if "default" in zoo.list_pretrained():
        card = zoo.card("default")["metrics"]
        assert summary["trained"]
        # the sample is 200 test images: the shipped pair must work on it, near its card
        assert summary["obfuscated_accuracy_over_http"] > card["obfuscated_acc_8bit"] - 0.1
        assert summary["plain_accuracy"] > card["plain_acc"] - 0.1
