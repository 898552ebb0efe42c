"""Rebuild the stored results that test `veil report` (run from the repository root):

    VEIL_QUIET=1 .venv/bin/python tests/data/regenerate.py

Tiny random-weight checkpoints, the bundled sample, a few test images and a tiny attacker budget;
the JSON and the Markdown rendered from it are copied here.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.test_eval import save_classifier, save_obfuscator  # noqa: E402

from veil.cli import main  # noqa: E402


def run() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        save_classifier(Path("clf-s0.pt"), 0)
        save_classifier(Path("clf-s1.pt"), 1)
        save_obfuscator(Path("obf.pt"), Path("clf-s0.pt"))
        assert main(["evaluate", "--classifiers", "clf-s0.pt", "clf-s1.pt", "--obfuscators",
                     "obf.pt", "--data", "sample", "--test-subset", "20", "--out", "out",
                     "--quiet"]) == 0
        assert main(["attack", "--obfuscators", "obf.pt", "--baselines", "downsample4", "noise",
                     "--data", "sample", "--test-subset", "20", "--epochs", "1", "--train-size",
                     "16", "--batch-size", "8", "--unet-width", "4", "--inversion-images", "10",
                     "--inversion-steps", "3", "--restarts", "2", "--out", "out",
                     "--quiet"]) == 0
        for name in ("tables.json", "tables.md", "attacks.json", "attacks.md"):
            shutil.copy(Path("out") / name, HERE / name)


if __name__ == "__main__":
    run()
