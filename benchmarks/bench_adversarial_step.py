"""CPU speed of veil's adversarial training step versus a plain eager fp32 implementation.

Both train the paper's obfuscator and deobfuscator against the same frozen classifier, on the same
batch, in the same process; repeats alternate between the two so that machine noise hits both.

* plain: the textbook step: O's loss L_c - lambda L_r backpropagated, then D re-run on the
  detached image and L_r backpropagated separately (two backward passes), contiguous NCHW, fp32.
* veil: `veil.train.obfuscator.AdversarialStep` (one backward pass through a gradient-reversal
  layer, channels-last), with the fast recipe's distillation term turned off so the losses match.

    python benchmarks/bench_adversarial_step.py --out results/cpu/adversarial_step
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from veil.models import FrozenClassifier, create_model
from veil.train.obfuscator import AdversarialStep, make_config
from veil.train.quantize import quantize_8bit_ste
from veil.train.runs import environment


def plain_step(classifier_name: str, lam: float):
    torch.manual_seed(0)
    o, d = create_model("obfuscator"), create_model("deobfuscator")
    c = FrozenClassifier(create_model(classifier_name))
    opt_o = torch.optim.Adam(o.parameters(), 1e-3)
    opt_d = torch.optim.Adam(d.parameters(), 1e-3)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        sent = quantize_8bit_ste(o(x))
        loss_c = F.cross_entropy(c(sent), y)
        loss_r = F.mse_loss(d(sent), x)
        opt_o.zero_grad()
        (loss_c - lam * loss_r).backward()
        opt_o.step()
        opt_d.zero_grad()
        F.mse_loss(d(sent.detach()), x).backward()
        opt_d.step()

    return step


def veil_step(classifier_name: str, lam: float, precision: str):
    torch.manual_seed(0)
    config = make_config("fast", distill=0.0, precision=precision)
    o, d = create_model("obfuscator"), create_model("deobfuscator")
    c = create_model(classifier_name)
    for m in (o, d, c):
        m.to(memory_format=torch.channels_last)
    step = AdversarialStep(o, d, c, config, torch.device("cpu"))
    return lambda x, y: step(x.contiguous(memory_format=torch.channels_last), y, lam)


def measure(steps: dict, batch: int, repeats: int) -> dict[str, list[float]]:
    x, y = torch.rand(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    for step in steps.values():
        step(x, y)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(x, y)
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--classifier", default="fastnet")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = {"plain_fp32_eager": plain_step(args.classifier, 1.0),
             "veil_fp32": veil_step(args.classifier, 1.0, "fp32"),
             "veil_bf16": veil_step(args.classifier, 1.0, "bf16")}
    times = measure(steps, args.batch_size, args.repeats)
    rate = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
    result = {"environment": environment(), "settings": vars(args),
              "images_per_s_median": rate,
              "speedup_vs_plain": {k: rate[k] / rate["plain_fp32_eager"] for k in rate},
              "seconds_per_step": times}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adversarial_step.json").write_text(json.dumps(result, indent=2))
    env = result["environment"]
    lines = [f"# Adversarial step on CPU ({env['cpu']}, {args.threads} threads, torch "
             f"{env['torch']})", "",
             f"Frozen classifier `{args.classifier}`, batch {args.batch_size}, median of "
             f"{args.repeats} alternating repeats in one run (the machine is shared; compare "
             "the ratios).", "", "| step | images/s | speed-up vs plain |", "|---|---:|---:|"]
    for k in rate:
        lines.append(f"| {k} | {rate[k]:.1f} | {result['speedup_vs_plain'][k]:.2f}x |")
    (out / "adversarial_step.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
