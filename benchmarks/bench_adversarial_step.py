"""CPU speed of veil's adversarial training step: today's step, the new one, and a textbook one.

All train the paper's obfuscator and deobfuscator against the same frozen classifier in the same
process; repeats alternate between the variants so that machine noise hits all of them alike.
Speeds are images per second (medians over repeats), so steps at different batch sizes compare.

* plain_fp32_eager: the textbook step: O's loss L_c - lambda L_r backpropagated, then D re-run on
  the detached image and L_r backpropagated separately (two backward passes), NCHW, fp32, b128.
* baseline_b128: `AdversarialStep` as it was before the learning-speed work (one backward pass
  through a gradient-reversal layer, channels-last, the classifier's BatchNorms run as layers),
  at the fast recipe's batch of 128. This is the reference of the >= 3x target.
* allocator_b128: the baseline with freed memory kept in the process (`veil.allocator`, what
  the `veil` command does now) instead of being unmapped and page-faulted back every step.
* new_b128: the allocator setting plus the frozen classifier's BatchNorms folded into its
  convolutions (the library default now). Folding is exact up to rounding (float64:
  tests/test_warm_start.py); here the fp32 losses of a few steps are shown beside a noise floor,
  the envelope of three rounding-sized nudges of the images (training is chaotic: any change
  of rounding grows, so the two agree only in size, not digit for digit).
* new_b32 / new_b32_bf16: the same at batch 32, the `staged` recipe's batch.
* new_b32_deobf50 / new_b32_deobf25: new_b32 with the co-trained deobfuscator on half or a
  quarter of each batch (`deobfuscator_fraction`); what it costs in privacy is measured by a
  fresh attacker after a short run (benchmarks/deobfuscator_fraction.sh).
* new_b32_fused: new_b32 with every BatchNorm + LeakyReLU of both networks as one op that keeps
  only its output for the backward pass (`veil.models.fused`, InPlace-ABN's pattern).
* new_b32_recompute: new_b32 with the two blocks over [N, 192, 32, 32] (the encoder's first
  bottleneck, the decoder's last) recomputed in the backward pass instead of kept.

The distillation and feature terms are off so that all variants compute the same losses.

    python benchmarks/bench_adversarial_step.py --out results/cpu/adversarial_step
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from veil import zoo
from veil.core.allocator import keep_freed_memory
from veil.core.eightbit import quantize_8bit_ste
from veil.core.runtime import environment
from veil.models import FrozenClassifier, create_model
from veil.models.fused import fuse_batchnorm_leakyrelu
from veil.report.results import write_result
from veil.train.obfuscator import AdversarialStep, make_config


def classifier_factory(name: str):
    """The embedded default's trained classifier for 'default', else a fresh zoo model."""
    if name == "default":
        return lambda: zoo.load("default").classifier
    return lambda: create_model(name).eval()


def plain_step(make_classifier, lam: float):
    torch.manual_seed(0)
    o, d = create_model("obfuscator"), create_model("deobfuscator")
    c = FrozenClassifier(make_classifier(), fold=False)
    opt_o = torch.optim.Adam(o.parameters(), 1e-3)
    opt_d = torch.optim.Adam(d.parameters(), 1e-3)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        sent = quantize_8bit_ste(o(x))
        loss_c = F.cross_entropy(c(sent), y)
        loss_r = F.mse_loss(d(sent), x)
        opt_o.zero_grad()
        (loss_c - lam * loss_r).backward()
        opt_o.step()
        opt_d.zero_grad()
        F.mse_loss(d(sent.detach()), x).backward()
        opt_d.step()
        return loss_c.item()

    return step


class Recomputed(torch.nn.Module):
    """A block whose activations are recomputed in the backward pass instead of kept."""

    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint(self.block, x, use_reentrant=False)


def veil_step(make_classifier, lam: float, precision: str = "fp32", fold: bool = True,
              fraction: float = 1.0, fuse: bool = False, recompute: bool = False):
    torch.manual_seed(0)
    config = make_config("fast", distill=0.0, precision=precision,
                         deobfuscator_fraction=fraction)
    o, d, c = create_model("obfuscator"), create_model("deobfuscator"), make_classifier()
    for m in (o, d):
        if fuse:
            fuse_batchnorm_leakyrelu(m)
        if recompute:  # the blocks over [N, 192, 32, 32]: the first and the last
            m.encoder[0], m.decoder[2] = Recomputed(m.encoder[0]), Recomputed(m.decoder[2])
    for m in (o, d, c):
        m.to(memory_format=torch.channels_last)
    step = AdversarialStep(o, d, c, config, torch.device("cpu"), fold=fold)

    def run(x: torch.Tensor, y: torch.Tensor) -> float:
        return step(x.contiguous(memory_format=torch.channels_last), y, lam)["loss_c"].item()

    return run


def batches(batch: int, count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,),
                                                                     generator=g))
            for _ in range(count)]


VARIANTS = {
    # name: (step factory arguments, batch, keep freed memory)
    "plain_fp32_eager": ({"kind": "plain"}, 128, False),
    "baseline_b128": ({"kind": "veil", "fold": False}, 128, False),
    "allocator_b128": ({"kind": "veil", "fold": False}, 128, True),
    "new_b128": ({"kind": "veil", "fold": True}, 128, True),
    "new_b32": ({"kind": "veil", "fold": True}, 32, True),
    "new_b32_bf16": ({"kind": "veil", "fold": True, "precision": "bf16"}, 32, True),
    # the co-trained deobfuscator on a share of each batch (deobfuscator_fraction)
    "new_b32_deobf50": ({"kind": "veil", "fold": True, "fraction": 0.5}, 32, True),
    "new_b32_deobf25": ({"kind": "veil", "fold": True, "fraction": 0.25}, 32, True),
    # BatchNorm + LeakyReLU as one op keeping one tensor (veil.models.fused)
    "new_b32_fused": ({"kind": "veil", "fold": True, "fuse": True}, 32, True),
    # the widest blocks' activations recomputed in the backward pass (torch.utils.checkpoint)
    "new_b32_recompute": ({"kind": "veil", "fold": True, "recompute": True}, 32, True),
}


def worker(name: str, classifier: str, steps: int, threads: int) -> float:
    """Images/s of one variant in this (fresh) process: median over `steps` timed steps."""
    spec, batch, tuned = VARIANTS[name]
    if tuned:
        keep_freed_memory()
    torch.set_num_threads(threads)
    make = classifier_factory(classifier)
    spec = dict(spec)
    step = (plain_step(make, 1.0) if spec.pop("kind") == "plain" else veil_step(make, 1.0, **spec))
    x, y = batches(batch, 1)[0]
    step(x, y)  # warm-up
    step(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def measure(names: list[str], args) -> dict[str, list[float]]:
    """Each variant in its own process (the allocator setting is process-wide), rounds
    alternating between variants so that machine noise hits all of them alike."""
    rates: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            env = {**os.environ, "VEIL_MALLOC": "tuned" if VARIANTS[name][2] else "system"}
            out = subprocess.run([sys.executable, __file__, "--worker", name, "--classifier",
                                  args.classifier, "--steps", str(args.steps), "--threads",
                                  str(args.threads), "--out", "-"], check=True, env=env,
                                 capture_output=True, text=True)
            rates[name].append(float(out.stdout.strip().splitlines()[-1]))
    return rates


NUDGES = (1e-6, -1e-6, 1e-7)  # rounding-sized changes to the images: the noise floor's samples


def losses_agree(make_classifier, steps: int = 5) -> dict[str, list[float]]:
    """L_c over the same first steps: BatchNorms unfolded, folded, and unfolded with the images
    nudged by each of NUDGES (how far float rounding alone carries training apart; training is
    chaotic, so one nudge is one sample of that spread and the floor is their envelope)."""
    data = batches(128, steps, seed=1)
    runs = {"unfolded": (veil_step(make_classifier, 1.0, fold=False), 0.0),
            "folded": (veil_step(make_classifier, 1.0, fold=True), 0.0)}
    runs.update({f"unfolded_nudged_{n:g}": (veil_step(make_classifier, 1.0, fold=False), n)
                 for n in NUDGES})
    return {name: [step(x + nudge, y) for x, y in data] for name, (step, nudge) in runs.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--classifier", default="default",
                   help="'default' (the embedded default's trained fastnet) or a zoo name")
    p.add_argument("--repeats", type=int, default=5, help="rounds over all variants")
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), metavar="NAME",
                   help="measure only these (baseline_b128 and plain_fp32_eager always run, "
                        "the ratios' references)")
    p.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(worker(args.worker, args.classifier, args.steps, args.threads))
        return 0
    torch.set_num_threads(args.threads)
    make = classifier_factory(args.classifier)
    names = [n for n in VARIANTS if not args.variants or n in args.variants
             or n in ("plain_fp32_eager", "baseline_b128")]
    sizes = {name: VARIANTS[name][1] for name in names}
    times = measure(names, args)
    rate = {k: statistics.median(v) for k, v in times.items()}
    agreement = losses_agree(make)
    gap = [abs(a - b) for a, b in zip(agreement["folded"], agreement["unfolded"], strict=True)]
    noise = [max(abs(agreement[f"unfolded_nudged_{n:g}"][i] - u) for n in NUDGES)
             for i, u in enumerate(agreement["unfolded"])]
    result = {"schema": "veil.adversarial_step/1", "environment": environment(),
              "settings": vars(args), "batch_sizes": sizes,
              "images_per_s_median": rate,
              "speedup_vs_baseline": {k: rate[k] / rate["baseline_b128"] for k in rate},
              "speedup_vs_plain": {k: rate[k] / rate["plain_fp32_eager"] for k in rate},
              "loss_c_per_step": agreement, "loss_c_gap_folded": gap,
              "loss_c_gap_nudged_noise_floor": noise,
              "images_per_s_per_round": times}
    print(write_result(result, args.out)[1].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
