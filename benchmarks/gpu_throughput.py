"""Training throughput of each zoo classifier and of the adversarial obfuscator step.

Measures images/s (median of timed repeats after warm-up) for bf16 autocast + channels-last,
optionally with torch.compile, so that the paper-scale schedules can be sized. Writes JSON and
Markdown to --out. Runs on CPU too (tiny settings) so that it is tested before a GPU run.

    python benchmarks/gpu_throughput.py --out results/gpu [--batch-size 512] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from veil.core.runtime import environment, resolve_device
from veil.pipeline.reproduce_budget import classifier_step, obfuscator_step, synchronize
from veil.report.results import write_result
from veil.train.obfuscator import make_config

CLASSIFIERS = ("vgg19", "resnet18", "resnet50", "googlenet", "fastnet")


def time_steps(step, device: torch.device, warmup: int, repeats: int, steps: int) -> list[float]:
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        times.append((time.perf_counter() - t0) / steps)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--models", default=",".join(CLASSIFIERS))
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd classifiers")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    rows = []
    variants = [("classifier", False), ("adversarial", False)]
    if args.compile:
        variants.insert(1, ("classifier", True))
    for name in args.models.split(","):
        for kind, compiled in variants:
            t0 = time.perf_counter()
            make_step = (classifier_step(name, device, args.precision, True, compiled)
                         if kind == "classifier" else
                         obfuscator_step(name, make_config("fast", precision=args.precision),
                                         device))
            step = make_step(args.batch_size)
            times = time_steps(step, device, args.warmup, args.repeats, args.steps)
            row = {"model": name, "step": kind, "compiled": compiled,
                   "batch_size": args.batch_size, "precision": args.precision,
                   "channels_last": True,
                   "images_per_s_median": args.batch_size / statistics.median(times),
                   "images_per_s_all": [args.batch_size / t for t in times],
                   "setup_and_warmup_s": round(time.perf_counter() - t0 - sum(times) * args.steps,
                                               2)}
            rows.append(row)
            print(f"{name:10s} {kind:11s} compiled={compiled!s:5s} "
                  f"{row['images_per_s_median']:10.0f} img/s", flush=True)
            del step
            if device.type == "cuda":
                torch.cuda.empty_cache()
    write(Path(args.out), rows, args)
    return 0


def write(out: Path, rows: list[dict], args: argparse.Namespace) -> None:
    write_result({"schema": "veil.throughput/1", "environment": environment(), "rows": rows,
                  "settings": vars(args)}, out)


if __name__ == "__main__":
    raise SystemExit(main())
