"""Which obfuscator recipe learns fastest on this CPU? Side-by-side curves, then attackers.

Step 1 (`--grid`, optional): train the grid's recipes side by side with
`obfuscator_recipe_search.py` (each a `veil train obfuscator` process, `--set curve_every=N` given).
Step 2: for every run folder under `--runs`: its curve (8-bit obfuscated accuracy on a fixed
1,000-image test slice against training seconds, from `curve.jsonl`), the final checkpoint on the
full test split (plain and obfuscated accuracy, co-trained deobfuscator PSNR/SSIM) and a fresh
post-hoc attacker: a U-Net trained from the sent images of the training split back to the
originals after the obfuscator is frozen, until its validation curve is flat or `--attack-s`
runs out; it is scored on test images it never saw (the validation slice is separate).

    python benchmarks/learning_speed.py --runs DIR --data SRC --out results/cpu/learning_speed

Writes learning_speed.json, learning_speed.md and learning_speed.png (one line per recipe).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from veil.attacks.decoders import make_decoder
from veil.attacks.defenses import obfuscator_defense
from veil.attacks.fresh_decoder import attacker_curves, reconstruct, train_until_flat
from veil.core.allocator import keep_freed_memory
from veil.core.runtime import environment
from veil.data import TensorLoader, load_dataset
from veil.data.dataset import Split
from veil.metrics import psnr, ssim
from veil.models.loading import load_classifier, load_obfuscator_pair
from veil.report.results import write_result
from veil.train.obfuscator import evaluate_pair


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def evaluate_run(run: Path, ds, args) -> dict[str, Any]:
    device = torch.device("cpu")
    obfuscator, deobfuscator, payload = load_obfuscator_pair(run / "model.pt")
    classifier, _ = load_classifier(payload["config"]["classifier"], expected_classes=ds.classes)
    final = evaluate_pair(obfuscator, deobfuscator, classifier, TensorLoader(ds.test, 500), device)
    attacker = attack(obfuscator, ds, args, run.name)
    epochs = [r for r in read_jsonl(run / "metrics.jsonl") if r["epoch"] > 0]
    return {"name": run.name, "config": payload["config"], "curve": read_jsonl(run / "curve.jsonl"),
            "epochs": read_jsonl(run / "metrics.jsonl"), "final": final,
            "train_s": epochs[-1]["wall_s"] if epochs else None, "attacker": attacker}


def attack(obfuscator: torch.nn.Module, ds, args, name: str) -> dict[str, Any]:
    """Fresh U-Net attackers on the frozen obfuscator, one per loss; the strongest (highest SSIM
    on unseen test images) first, all of them under "all"."""
    return attack_defense(obfuscator_defense(name, obfuscator), ds, args)


def attack_defense(defense, ds, args) -> dict[str, Any]:
    """The same attackers on any defense (an obfuscator or a baseline)."""
    val = Split(ds.test.images[:args.val_images], ds.test.labels[:args.val_images])
    held = Split(ds.test.images[args.val_images:args.val_images + args.score_images],
                 ds.test.labels[args.val_images:args.val_images + args.score_images])
    x = next(iter(TensorLoader(held, len(held))))[0]
    sent = defense.transmit_all(x)
    results = []
    for name in getattr(args, "decoders", None) or ["unet"]:
        for ssim_weight in args.ssim_weights:
            torch.manual_seed(args.seed)
            decoder, curve = train_until_flat(
                defense, make_decoder(name, args.unet_width), ds.train, val,
                torch.device("cpu"), time_budget_s=args.attack_s,
                max_images=args.attack_images, eval_every=args.attack_eval_every,
                ssim_weight=ssim_weight, seed=args.seed)
            rebuilt = reconstruct(decoder, sent)
            loss = "mse" if ssim_weight == 0 else f"mse + {ssim_weight:g} (1 - ssim)"
            label = f"unet{args.unet_width}" if name == "unet" else "paper"
            results.append({"decoder": label, "loss": loss, **curve,
                            "test_ssim": ssim(rebuilt, x).mean().item(),
                            "test_psnr": psnr(rebuilt, x).mean().item(),
                            "test_images": len(held)})
    strongest = max(results, key=lambda r: r["test_ssim"])
    return {**strongest, "all": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, type=Path, help="folder of obfuscator run folders")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--names", nargs="*", help="only these runs (default: all with a model.pt)")
    p.add_argument("--attack-s", type=float, default=240.0, help="attacker time budget, s")
    p.add_argument("--attack-images", type=int, default=None,
                   help="attacker budget in training images (the same for every run, whatever "
                        "else shares the machine); --attack-s caps the time as well")
    p.add_argument("--attack-eval-every", type=int, default=4000)
    p.add_argument("--unet-width", type=int, default=32)
    p.add_argument("--decoders", nargs="+", choices=["unet", "deobfuscator"], default=["unet"],
                   help="fresh attackers' architectures: the U-Net and/or the paper's "
                        "(the deobfuscator's); the strongest is reported")
    p.add_argument("--ssim-weights", type=float, nargs="+", default=[0.0],
                   help="one attacker per value: loss MSE + w (1 - SSIM); 0 is plain MSE")
    p.add_argument("--val-images", type=int, default=500)
    p.add_argument("--score-images", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of other runs already in --out's learning_speed.json")
    args = p.parse_args(argv)
    keep_freed_memory()
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    runs = sorted(r for r in args.runs.iterdir() if (r / "model.pt").exists()
                  and (not args.names or r.name in args.names))
    rows = []
    for run in runs:
        rows.append(evaluate_run(run, ds, args))
        print(f"{run.name}: obfuscated {rows[-1]['final']['obfuscated_acc']:.2%}, attacker SSIM "
              f"{rows[-1]['attacker']['test_ssim']:.3f}", flush=True)
    env = environment()
    previous = args.out / "learning_speed.json"
    if args.merge and previous.exists():
        done = {r["name"] for r in rows}
        rows = [r for r in json.loads(previous.read_text())["runs"] if r["name"] not in done] + rows
        rows.sort(key=lambda r: r["name"])
    settings = {k: str(v) for k, v in vars(args).items()}
    written = write_result({"schema": "veil.learning_speed/1", "environment": env,
                            "settings": settings, "runs": rows}, args.out)
    write_result(attacker_curves({r["name"]: r["attacker"]["all"] for r in rows}), args.out)
    print(written[1].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
