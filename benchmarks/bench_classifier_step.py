"""CPU speed of one classifier training step, fp32 against bf16 autocast, for the cloud models.

The cloud classifiers (cloudnet_s/m/l) are wide convolutions, compute-bound, unlike the
obfuscator's memory-bound step (results/cpu/adversarial_step, where bf16 was slower). On a CPU
with AVX-512 BF16, oneDNN runs their convolutions in bf16 under `torch.autocast`. Each step is
the recipe's: Nesterov SGD, label smoothing, channels-last, random images, freed memory kept
in the process (as the `veil` command does). Rounds alternate between the variants so that
machine noise hits them alike; images per second, medians over the rounds, and the ratio.

    python benchmarks/bench_classifier_step.py --out results/cpu/classifier_step
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from veil.core.allocator import keep_freed_memory
from veil.core.runtime import environment
from veil.models import create_model
from veil.report.results import write_result

SCHEMA = "veil.classifier_step/1"
PRECISIONS = ("fp32", "bf16")


def cpu_flags() -> list[str]:
    """The AVX-512 flags of this CPU that matter to bf16 (Linux /proc/cpuinfo; else none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return sorted(f for f in flags if f in ("avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"))


class Stepper:
    """One model's training step at one precision, on a fixed random batch."""

    def __init__(self, model_name: str, batch: int, seed: int) -> None:
        torch.manual_seed(seed)
        self.model = create_model(model_name).to(memory_format=torch.channels_last).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9,
                                         nesterov=True)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=0.2)
        self.x = torch.rand(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (batch,))

    def step(self, precision: str) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = self.criterion(self.model(self.x), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def images_per_s(self, precision: str, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step(precision)
        return steps * len(self.x) / (time.perf_counter() - start)


def measure(model_name: str, batch: int, steps: int, rounds: int, seed: int
            ) -> dict[str, list[float]]:
    stepper = Stepper(model_name, batch, seed)
    for precision in PRECISIONS:  # warm-up: oneDNN picks its kernels on the first call
        stepper.step(precision)
    rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(rounds):
        for precision in PRECISIONS:
            rates[precision].append(round(stepper.images_per_s(precision, steps), 2))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cloudnet_s", "cloudnet_m", "cloudnet_l"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/cpu/classifier_step")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    models = {}
    for name in args.models:
        rates = measure(name, args.batch, args.steps, args.rounds, args.seed)
        medians = {p: statistics.median(v) for p, v in rates.items()}
        models[name] = {"images_per_s": rates, "median": medians,
                        "bf16_over_fp32": round(medians["bf16"] / medians["fp32"], 3)}
        print(f"{name}: {medians} bf16/fp32 {models[name]['bf16_over_fp32']:.2f}x", flush=True)
    result = {"schema": SCHEMA, "environment": environment(), "cpu_flags": cpu_flags(),
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "models": models}
    for path in write_result(result, args.out):
        print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
