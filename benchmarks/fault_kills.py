"""`veil train obfuscator` SIGKILLed at random moments of the staged recipe, then `--resume`d.

Each trial starts a fresh run of the staged recipe in miniature (encoder and utility warm start,
an epoch of λ ramp, an adversarial epoch) as its own process, kills it with SIGKILL at a
moment drawn uniformly over an uninterrupted run's wall time, and resumes it with `--resume`
until it finishes. The finished run is compared with the uninterrupted one: every metrics row
and curve row (timings aside) and every weight of model.pt, bit for bit. Also recorded: where
the kill landed, the work lost (seconds from the newest saved state to the kill) and the time
the resumed process took against the uninterrupted run's.

    python benchmarks/fault_kills.py --out results/faults --trials 10 --seed 0
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from veil.core.checkpoint import load_checkpoint
from veil.core.runtime import environment
from veil.report.results import write_result

TIMINGS = {"wall_s", "images_per_s", "encoder_s", "train_s"}
RUN = ["--data", "sample", "--recipe", "staged", "--epochs", "2", "--batch-size", "50",
       "--set", "train_subset=100", "--set", "test_subset=50", "--set",
       "warm_start=encoder:2,utility:2", "--set", "warm_start_batch_size=50", "--set",
       "lam_ramp_epochs=1", "--set", "curve_every=50", "--threads", "1", "--seed", "0",
       "--quiet"]


def veil(*argv: str) -> list[str]:
    return [sys.executable, "-m", "veil", *argv]


def train(classifier: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(veil("train", "obfuscator", "--classifier", str(classifier),
                                 "--out", str(out), *RUN, *extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> float:
    t0 = time.perf_counter()
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(err.decode()[-2000:])
    return time.perf_counter() - t0


def where(run: Path) -> tuple[str, float | None]:
    """Where a killed run stood, from its newest saved state, and that state's mtime."""
    saved = [p for p in (run / "warm-start-encoder.pt", run / "warm-start-utility.pt",
                         run / "last.pt") if p.exists()]
    if not saved:
        return "encoder warm start, pass 1 (nothing saved yet)", None
    newest = max(saved, key=lambda p: p.stat().st_mtime)
    state = load_checkpoint(newest)
    if newest.name == "last.pt":
        phase = {0: "adversarial epoch 1 (λ ramp)", 1: "adversarial epoch 2"}.get(
            state["epoch"], "writing model.pt")
    else:
        stage = newest.stem.removeprefix("warm-start-")
        phase = f"{stage} warm start after step {state['step']}"
    return phase, newest.stat().st_mtime


def outcome(run: Path) -> dict[str, Any]:
    def rows(name: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
                for line in (run / name).read_text().splitlines()]

    return {"metrics": rows("metrics.jsonl"), "curve": rows("curve.jsonl"),
            "model": load_checkpoint(run / "model.pt")}


def identical(a: dict[str, Any], b: dict[str, Any]) -> dict[str, bool]:
    weights = all(torch.equal(a["model"][net][k], b["model"][net][k])
                  for net in ("obfuscator", "deobfuscator") for k in a["model"][net])
    return {"metrics": a["metrics"] == b["metrics"], "curve": a["curve"] == b["curve"],
            "weights": weights}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/faults")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="veil-kills-"))
    subprocess.run(veil("train", "classifier", "--model", "fastnet_tiny", "--data", "sample",
                        "--epochs", "3", "--batch-size", "32", "--threads", "1", "--quiet",
                        "--out", str(work / "clf")), check=True)
    classifier = work / "clf" / "model.pt"
    reference_s = finish(train(classifier, work / "straight"))
    reference = outcome(work / "straight")
    trials = []
    for trial in range(args.trials):
        run = work / f"killed-{trial}"
        at = rng.uniform(0.05, 0.95) * reference_s
        proc = train(classifier, run)
        time.sleep(at)
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        phase, saved_at = where(run)
        resume_s = finish(train(classifier, run, "--resume"))
        same = identical(outcome(run), reference)
        trials.append({"trial": trial, "killed_after_s": round(at, 2), "phase": phase,
                       "lost_s": round(killed_at - saved_at, 2) if saved_at else round(at, 2),
                       "resume_s": round(resume_s, 2), "identical": same})
        print(json.dumps(trials[-1]), flush=True)
    report = {"schema": "veil.fault_kills/1", "environment": environment(), "seed": args.seed,
              "run": RUN,
              "uninterrupted_s": round(reference_s, 2), "trials": trials,
              "all_identical": all(all(t["identical"].values()) for t in trials),
              "median_lost_s": statistics.median(t["lost_s"] for t in trials)}
    written = write_result(report, args.out)
    print(f"all identical: {report['all_identical']}; wrote {written[0]}")
    return 0 if report["all_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
