"""The built wheel works on its own: installed into a fresh virtual environment, outside the
source tree, `veil models` and `veil demo` run on what the wheel ships (weights, cards, sample).

The fresh environment borrows the installed dependencies (torch, onnxruntime, ...) from the test's
own environment through a plain path entry, which does not run that environment's `.pth` files:
the editable install of veil there stays invisible, so only the wheel's veil can be imported.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(root / "dist"), str(REPO)], check=True)
    wheel = next((root / "dist").glob("veil-*.whl"))
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True, text=True)
    borrowed = [p for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                            *site.getsitepackages()} if Path(p).is_dir()]
    Path(purelib.stdout.strip(), "borrowed-deps.pth").write_text("\n".join(borrowed) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True)
    return env_dir


def _run(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VEIL_DATA")}
    env["VEIL_QUIET"] = "1"
    return subprocess.run([str(env_dir / "bin" / "veil"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_wheel_imports_its_own_veil_not_the_source_tree(wheel_env, tmp_path):
    out = subprocess.run([str(wheel_env / "bin" / "python"), "-c",
                          "import veil, sys; print(veil.__file__)"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    location = Path(out.stdout.strip())
    assert wheel_env in location.parents and REPO not in location.parents


def test_the_wheel_runs_models_and_the_demo_outside_the_source_tree(wheel_env, tmp_path):
    models = _run(wheel_env, tmp_path, "models", "--out", str(tmp_path / "models"))
    assert models.returncode == 0, models.stderr
    assert "obfuscator" in models.stdout
    demo = _run(wheel_env, tmp_path, "demo", "--out", str(tmp_path / "demo"))
    assert demo.returncode == 0, demo.stderr[-2000:]
    summary = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert summary["obfuscated_accuracy_over_http"] > 0.3
    assert (tmp_path / "demo" / "demo_grid.png").stat().st_size > 1000
