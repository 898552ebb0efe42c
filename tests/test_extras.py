"""Each install extra is closed: with only what `pip install veil[extra]` brings, its commands run.

For every extra, a fresh virtual environment gets the built wheel and exactly the distributions
of that extra's dependency closure (read from the wheel's own metadata, resolved through the
installed distributions' metadata) as links into its site-packages, nothing else. Then the
extra's commands run there: `--help`, and one small real call each, on the bundled sample.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from conftest import REPO

pytestmark = pytest.mark.slow


def _requirements(lines: list[str], extras: set[str]) -> list[Requirement]:
    wanted = []
    for line in lines:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            wanted.append(req)
    return wanted


def closure(wheel_requires: list[str], extra: str) -> set[str]:
    """Distribution names `veil[extra]` installs (veil's self-references expanded)."""
    names, todo, extras = set(), [], {extra}
    while True:  # expand veil[...] self-references first
        more = {e for r in _requirements(wheel_requires, extras) if _norm(r.name) == "veil"
                for e in r.extras} - extras
        if not more:
            break
        extras |= more
    todo = [r for r in _requirements(wheel_requires, extras) if _norm(r.name) != "veil"]
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name in names:
            continue
        names.add(name)
        todo += _requirements(metadata.distribution(name).requires or [], set(req.extras))
    return names


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _link_distribution(name: str, site: Path) -> None:
    dist = metadata.distribution(name)
    root = Path(dist.locate_file(""))
    for top in {Path(str(f)).parts[0] for f in dist.files or []} - {".."}:
        source, target = root / top, site / top
        if source.exists() and not target.exists():
            target.symlink_to(source)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("extras-wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(dist), str(REPO)], check=True)
    return next(dist.glob("veil-*.whl"))


def wheel_requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:")]


def environment_for(extra: str, wheel: Path, root: Path) -> Path:
    env_dir = root / f"venv-{extra}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    for name in closure(wheel_requires(wheel), extra):
        _link_distribution(name, site)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", str(wheel)], check=True)
    return env_dir


def veil(env_dir: Path, cwd: Path, *args: str, timeout: float = 600
         ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VEIL_DATA")}
    env.update(VEIL_QUIET="1", VEIL_CACHE=str(cwd / "cache"))
    return subprocess.run([str(env_dir / "bin" / "veil"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.stdout[-1500:], result.stderr[-3000:])
    return result.stdout


def test_the_closure_reads_the_wheels_extras(wheel):
    requires = wheel_requires(wheel)
    edge, train = closure(requires, "edge"), closure(requires, "train")
    assert {"onnxruntime", "httpx", "numpy", "pillow"} <= edge and "torch" not in edge
    assert {"torch", "tqdm", "pyyaml", "pytorch-msssim", "torchmetrics"} <= train
    assert "onnx" not in train
    assert "matplotlib" in closure(requires, "eval") and "fastapi" in closure(requires, "serve")


def test_train_extra_trains_both_networks(wheel, tmp_path):
    env = environment_for("train", wheel, tmp_path)
    ok(veil(env, tmp_path, "train", "classifier", "--help"))
    ok(veil(env, tmp_path, "train", "classifier", "--model", "fastnet_tiny", "--data", "sample",
            "--epochs", "1", "--batch-size", "50", "--out", "c", "--quiet"))
    ok(veil(env, tmp_path, "train", "obfuscator", "--classifier", "c/model.pt", "--data",
            "sample", "--recipe", "fast", "--epochs", "1", "--batch-size", "50", "--out", "o",
            "--quiet"))
    assert (tmp_path / "o" / "model.pt").is_file()
    others = {"export": ["export", "o/model.pt", "--out", "x.onnx"],
              "serve": ["serve", "--classifier", "c/model.pt", "--port", "1"]}
    for extra, command in others.items():  # another extra's command says which to install
        result = veil(env, tmp_path, *command)
        assert result.returncode == 2, (command, result.stderr[-1500:])
        assert f"pip install 'veil[{extra}]'" in result.stderr, (command, result.stderr[-1500:])


def _tiny_models(env: Path, cwd: Path) -> None:
    ok(veil(env, cwd, "train", "classifier", "--model", "fastnet_tiny", "--data", "sample",
            "--epochs", "1", "--batch-size", "50", "--out", "c", "--quiet"))
    ok(veil(env, cwd, "train", "obfuscator", "--classifier", "c/model.pt", "--data", "sample",
            "--recipe", "fast", "--epochs", "1", "--batch-size", "50", "--out", "o", "--quiet"))


def test_eval_extra_evaluates_and_attacks(wheel, tmp_path):
    env = environment_for("eval", wheel, tmp_path)
    _tiny_models(env, tmp_path)
    out = ok(veil(env, tmp_path, "evaluate", "--classifiers", "c/model.pt", "--obfuscators",
                  "o/model.pt", "--data", "sample", "--out", "tables", "--quiet"))
    assert "Table 1" in out and (tmp_path / "tables" / "tables.json").is_file()
    ok(veil(env, tmp_path, "attack", "--help"))
    ok(veil(env, tmp_path, "report", "tables"))


def test_export_extra_exports(wheel, tmp_path):
    env = environment_for("export", wheel, tmp_path)
    _tiny_models(env, tmp_path)
    ok(veil(env, tmp_path, "export", "o/model.pt", "--out", "obf.onnx"))
    assert (tmp_path / "obf.onnx").stat().st_size > 10_000 and (tmp_path / "obf.json").is_file()


def test_serve_extra_serves(wheel, tmp_path):
    env = environment_for("serve", wheel, tmp_path)
    ok(veil(env, tmp_path, "train", "classifier", "--model", "fastnet_tiny", "--data", "sample",
            "--epochs", "1", "--batch-size", "50", "--out", "c", "--quiet"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(env / "bin" / "veil"), "serve", "--classifier", "c/model.pt",
                               "--port", str(port), "--log-level", "warning"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health is not None and health.status_code == 200, server.stderr.read()[-2000:]
        assert health.json()["classifier"]["model_name"] == "fastnet_tiny"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_edge_extra_fits_and_encodes_without_torch(wheel, tmp_path):
    env = environment_for("edge", wheel, tmp_path)
    ok(veil(env, tmp_path, "classify", "--help"))
    script = ("import numpy as np, sys\n"
              "from veil.edge.images import encode_png, fit_array\n"
              "png = encode_png(fit_array(np.zeros((40, 50, 3), np.uint8)))\n"
              "assert png.startswith(b'\\x89PNG') and 'torch' not in sys.modules\n"
              "print('ok')\n")
    result = subprocess.run([str(env / "bin" / "python"), "-c", script], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert ok(result).strip() == "ok"
    result = veil(env, tmp_path, "train", "classifier", "--help")
    assert result.returncode == 2 and "pip install 'veil[train]'" in result.stderr
