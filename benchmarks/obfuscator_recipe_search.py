"""Which obfuscator recipe learns fastest? Run a grid of `veil train obfuscator` settings side by
side and tabulate each run's per-epoch obfuscated accuracy and co-trained deobfuscator PSNR/SSIM.

    python benchmarks/obfuscator_recipe_search.py --grid GRID.json --data SRC --out DIR \
        [--workers 4] [--deadline-s 300] [-- COMMON TRAIN OPTIONS, e.g. --device cuda]

GRID.json is a list of jobs, run by a pool of `--workers` processes (on one GPU several small
jobs share it better than one alone): {"name": ..., "what": "obfuscator" | "classifier",
"args": {"lam": 1, "identity-epochs": 0.5, ...}}. An obfuscator job names its classifier
checkpoint in args (`{out}` stands for DIR); one that names a file another job will write waits
for it. Every epoch is
logged as it ends, so a run cut by the deadline still reports what it reached. Results:
DIR/search.json and DIR/search.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from veil.report.results import write_result


def expand(jobs: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """The jobs with `{out}` in their string arguments replaced by the output folder."""
    def value(v: Any) -> Any:
        return v.replace("{out}", str(out)) if isinstance(v, str) else v
    return [{**j, "args": {k: value(v) for k, v in j.get("args", {}).items()}} for j in jobs]


FLAGS = {"classifier", "model", "recipe"}  # given as options; the rest as --set key=value


def command(job: dict[str, Any], data: str, out: Path, common: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "veil", "train", job.get("what", "obfuscator"),
           "--data", data, "--out", str(out / job["name"]), "--quiet", *common]
    for key, value in job.get("args", {}).items():
        if key in FLAGS:
            cmd += [f"--{key}", str(value)]
        else:  # every other setting by its config name
            text = str(value).lower() if isinstance(value, bool) else str(value)
            cmd += ["--set", f"{key.replace('-', '_')}={text}"]
    return cmd


def ready(job: dict[str, Any]) -> bool:
    needs = job.get("args", {}).get("classifier")
    # the .sha256 sidecar is written after the checkpoint itself
    return needs is None or Path(f"{needs}.sha256").exists()


def run_grid(jobs: list[dict[str, Any]], data: str, out: Path, workers: int, deadline_s: float,
             common: list[str]) -> dict[str, int | None]:
    """Run the jobs, `workers` at a time; returns each job's exit status (None: cut)."""
    waiting = [j for j in jobs if not (out / j["name"] / "model.pt").exists()]
    running: dict[str, tuple[subprocess.Popen, Any]] = {}
    status: dict[str, int | None] = {j["name"]: 0 for j in jobs if j not in waiting}
    start = time.monotonic()
    while waiting or running:
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                status[name] = proc.returncode
                log.close()
                del running[name]
                print(f"[{time.monotonic() - start:6.0f} s] {name}: exit {proc.returncode}",
                      flush=True)
        if time.monotonic() - start > deadline_s:
            for name, (proc, log) in running.items():
                proc.terminate()
                proc.wait()
                log.close()
                status[name] = None
                print(f"{name}: cut at the deadline", flush=True)
            status.update({j["name"]: None for j in waiting})
            break
        for job in [j for j in waiting if ready(j)][:max(0, workers - len(running))]:
            (out / job["name"]).parent.mkdir(parents=True, exist_ok=True)
            log = open(out / f"{job['name']}.log", "w")  # noqa: SIM115 (outlives this block)
            proc = subprocess.Popen(command(job, data, out, common), stdout=log,
                                    stderr=subprocess.STDOUT)
            running[job["name"]] = (proc, log)
            waiting.remove(job)
            print(f"[{time.monotonic() - start:6.0f} s] started {job['name']}", flush=True)
        time.sleep(0.5)
    return status


def summarise(jobs: list[dict[str, Any]], out: Path, status: dict[str, int | None]
              ) -> list[dict[str, Any]]:
    rows = []
    for job in jobs:
        log = out / job["name"] / "metrics.jsonl"
        epochs = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        epochs = [e for e in epochs if e.get("epoch", 0) > 0]
        rows.append({"name": job["name"], "what": job.get("what", "obfuscator"),
                     "args": job.get("args", {}), "exit": status.get(job["name"]),
                     "epochs": epochs})
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    common: list[str] = []
    if "--" in argv:
        common = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", required=True, help="JSON list of jobs")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 4))
    p.add_argument("--deadline-s", type=float, default=float("inf"))
    p.add_argument("--header", default="# Obfuscator recipe search")
    args = p.parse_args(argv)
    out = Path(args.out)
    jobs = expand(json.loads(Path(args.grid).read_text()), out)
    out.mkdir(parents=True, exist_ok=True)
    status = run_grid(jobs, args.data, out, args.workers, args.deadline_s, common)
    rows = summarise(jobs, out, status)
    meta = {"data": args.data, "common": common, "workers": args.workers, "header": args.header}
    written = write_result({"schema": "veil.recipe_search/1", "meta": meta, "runs": rows}, out)
    print(written[1].read_text())
    return 0 if all(s == 0 for s in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
