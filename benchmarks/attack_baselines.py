"""The heuristic baselines under the attackers the obfuscators face (`learning_speed.py`'s suite).

For each baseline (e.g. `downsample8`), fresh U-Net attackers are trained from its sent images
of the training split back to the originals, until their validation curve is flat or the image
budget runs out, and scored on held-out test images; the frozen classifier's accuracy on the
sent test images is measured too. Same attackers, same budgets and the same scoring images as
`results/cpu/default_attack/` and `results/cpu/lambda_sweep/`, so the points compare.

    python benchmarks/attack_baselines.py --classifier runs/default-classifier.pt \
        --data ../shared/data/cifar10-jpeg75.zip --baselines downsample8 downsample4 \
        --out results/cpu/baseline_attacks --attack-images 30000 --unet-width 48 --ssim-weights 0 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from learning_speed import attack_defense

from veil.attacks.baselines import make_baseline
from veil.attacks.fresh_decoder import attacker_curves
from veil.batches import accuracy_on, test_images
from veil.core.allocator import keep_freed_memory
from veil.core.runtime import environment
from veil.data import TensorLoader, load_dataset
from veil.models.loading import load_classifier
from veil.report.results import write_result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classifier", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--baselines", nargs="+", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--attack-s", type=float, default=100000.0)
    p.add_argument("--attack-images", type=int, default=30000)
    p.add_argument("--attack-eval-every", type=int, default=4000)
    p.add_argument("--unet-width", type=int, default=48)
    p.add_argument("--decoders", nargs="+", choices=["unet", "deobfuscator"], default=["unet"],
                   help="fresh attackers' architectures (the strongest is reported)")
    p.add_argument("--ssim-weights", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("--val-images", type=int, default=500)
    p.add_argument("--score-images", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    classifier, _ = load_classifier(args.classifier, expected_classes=ds.classes)
    calibration = next(iter(TensorLoader(ds.train.subset(512, args.seed), 512)))[0]
    x, y = test_images(ds, torch.device("cpu")), torch.as_tensor(ds.test.labels)
    rows = []
    for spec in args.baselines:
        defense = make_baseline(spec, calibration, args.seed)
        acc = accuracy_on(classifier, defense.transmit_all(x), y)
        rows.append({"name": spec, "accuracy": acc, "attacker": attack_defense(defense, ds, args)})
        print(f"{spec}: accuracy {acc:.2%}, strongest attacker SSIM "
              f"{rows[-1]['attacker']['test_ssim']:.3f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"schema": "veil.baseline_attacks/1", "environment": environment(),
              "settings": {k: str(v) for k, v in vars(args).items()}, "baselines": rows}
    written = write_result(result, args.out)
    write_result(attacker_curves({r["name"]: r["attacker"]["all"] for r in rows}), args.out)
    print(written[1].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
