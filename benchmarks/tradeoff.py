"""The privacy trade-off: a λ sweep of obfuscators and every baseline, each attacked the same way.

Trains one obfuscator per λ against a frozen classifier (`veil.train.obfuscator`, short budget),
scores them and the baselines (downsampling 4x/8x, blur, pixelation, noise, random-weight
obfuscator) with the same classifier and the same attacks (fresh decoders, white-box inversion),
and plots accuracy vs the strongest attacker's SSIM with the Pareto front (tradeoff.png).
It is `veil attack sweep` with a preset budget; finished λ runs in OUT/sweep are reused.

    python benchmarks/tradeoff.py --classifier runs/default-classifier/model.pt \
        --data ../shared/data/cifar10-jpeg75.zip --out results/cpu/tradeoff
    python benchmarks/tradeoff.py --preset smoke ...      # minutes, for checking the pipeline

Presets (override any flag by passing it after --): see PRESETS below.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from veil.cli import main

PRESETS: dict[str, list[str]] = {
    # CPU scale (2 cores): about 3 h. Measured here on 2 shared cores: obfuscator training
    # 32 img/s, fresh decoders 25 img/s (paper architecture) and 53 img/s (U-Net width 16),
    # inversion 50 image-steps/s: ~20 min of λ training, ~15 min per obfuscator attacked,
    # ~10 min per baseline.
    "cpu": ["--lams", "0", "0.3", "1", "3", "--sweep-epochs", "1",
            "--sweep-train-subset", "10000", "--baselines", "all", "blur:1", "noise:0.1",
            "--test-subset", "1000", "--epochs", "2", "--train-size", "5000",
            "--unet-width", "16", "--inversion-images", "50", "--inversion-steps", "150",
            "--restarts", "2"],
    # CPU in about 45 min (2 idle cores): three λ points trained alike on 8,000 images (so they
    # compare with each other, not with a longer-trained headline obfuscator), smaller attackers.
    "cpu-hour": ["--lams", "0", "1", "10", "--sweep-epochs", "1", "--sweep-train-subset", "8000",
                 "--baselines", "all", "blur:1", "noise:0.1", "--test-subset", "1000",
                 "--epochs", "2", "--train-size", "3000", "--unet-width", "16",
                 "--inversion-images", "20", "--inversion-steps", "100", "--restarts", "2"],
    # GPU (one H100): full test split, stronger attacker.
    "gpu": ["--lams", "0", "0.03", "0.1", "0.3", "1", "3", "10", "--sweep-epochs", "10",
            "--baselines", "all", "blur:1", "blur:3", "noise:0.1", "noise:0.4",
            "--epochs", "20", "--unet-width", "32", "--inversion-images", "500",
            "--inversion-steps", "500", "--restarts", "3"],
    # a few minutes on a CPU: checks the pipeline, numbers mean little
    "smoke": ["--lams", "0", "1", "--sweep-epochs", "1", "--sweep-train-subset", "256",
              "--baselines", "downsample4", "noise", "random_obfuscator", "--test-subset",
              "100", "--epochs", "1", "--train-size", "256", "--batch-size", "64",
              "--unet-width", "8", "--inversion-images", "20", "--inversion-steps", "20",
              "--restarts", "2"],
}


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", required=True, help="frozen classifier checkpoint")
    parser.add_argument("--data", default=None, help="data source (default: $VEIL_DATA)")
    parser.add_argument("--out", default="results/cpu/tradeoff")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    return parser.parse_known_args(argv)


def run(argv: list[str] | None = None) -> int:
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    extra = [a for a in extra if a != "--"]
    command = ["attack", "sweep", "--classifier", args.classifier, "--out", args.out,
               *PRESETS[args.preset], *extra]
    if args.data:
        command += ["--data", args.data]
    if args.threads:
        command += ["--threads", str(args.threads)]
    print("veil " + " ".join(command), flush=True)
    start = time.perf_counter()
    code = main(command)
    if code:
        return code
    result = json.loads((Path(args.out) / "attacks.json").read_text())
    print(f"\n{'defense':<32} {'accuracy':>9} {'attacker SSIM':>14}  strongest attack")
    for d in result["defenses"]:
        acc = "–" if d["accuracy"] is None else f"{100 * d['accuracy']:.2f}%"
        mark = " *" if d["name"] in result["pareto"] else ""
        s = d["strongest"]
        print(f"{d['name']:<32} {acc:>9} {s['ssim']:>14.3f}  {s['attack']}{mark}")
    print(f"\n* Pareto front. {time.perf_counter() - start:.0f} s in all; figure "
          f"{Path(args.out) / 'tradeoff.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
