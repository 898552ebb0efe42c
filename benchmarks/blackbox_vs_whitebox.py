"""Black-box vs white-box: the same obfuscator budget, trained once against a surrogate distilled
from a server's answers (`veil blackbox`) and once against the real classifier's weights, both
measured through the same `veil serve` on the same test images.

    python benchmarks/blackbox_vs_whitebox.py --classifier runs/default-classifier.pt \
        --data ../shared/data/cifar10-jpeg75.zip --out results/cpu/blackbox
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from veil.cli import main as veil
from veil.core.runtime import environment
from veil.data import load_dataset
from veil.pipeline.blackbox import server_accuracy
from veil.report.results import write_result
from veil.serve.app import ServerConfig, create_app
from veil.serve.inference import Predictor
from veil.serve.server import BackgroundServer
from veil.train.obfuscator import make_config, train_obfuscator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classifier", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--query-budget", type=int, default=10_000)
    p.add_argument("--surrogate", default="fastnet")
    p.add_argument("--surrogate-epochs", type=int, default=8)
    p.add_argument("--train-subset", type=int, default=10_000)
    p.add_argument("--encoder-epochs", type=float, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--whitebox-obfuscator", type=Path,
                   help="measure this white-box obfuscator instead of training one at the same "
                        "budget (e.g. the shipped default: python -m veil.zoo.build "
                        "--extract-classifier C --extract-obfuscator O)")
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    budget = ["--train-subset", str(args.train_subset), "--warm-start",
              f"encoder:{args.encoder_epochs:g}", "--epochs", str(args.epochs)]
    app = create_app(Predictor.from_checkpoint(args.classifier), ServerConfig(max_images=64))
    seconds = {}
    with BackgroundServer(app) as url:
        t0 = time.perf_counter()
        assert veil(["blackbox", "--classifier-url", url, "--data", args.data, "--out",
                     str(args.out / "blackbox"), "--query-budget", str(args.query_budget),
                     "--surrogate", args.surrogate, "--surrogate-epochs",
                     str(args.surrogate_epochs), *budget, "--eval-images",
                     str(args.eval_images), "--seed", str(args.seed), "--threads",
                     str(args.threads), "--quiet"]) == 0
        seconds["blackbox"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        white = args.out / "whitebox"
        white_model = args.whitebox_obfuscator or white / "model.pt"
        if args.whitebox_obfuscator is None and not white_model.exists():
            train_obfuscator(make_config("staged", classifier=args.classifier, data=args.data,
                                         out=str(white), train_subset=args.train_subset,
                                         warm_start={"encoder": args.encoder_epochs},
                                         epochs=args.epochs,
                                         seed=args.seed, threads=args.threads), quiet=True)
        test = load_dataset(args.data).test.subset(args.eval_images, args.seed)
        white_acc = server_accuracy(url, None, test.images, test.labels, white_model,
                                    args.threads)
        seconds["whitebox"] = time.perf_counter() - t0
    black = json.loads((args.out / "blackbox" / "blackbox.json").read_text())
    result = {"schema": "veil.blackbox_vs_whitebox/1",
              "settings": {k: str(v) for k, v in vars(args).items()},
              "environment": environment(), "seconds": {k: round(v, 1) for k, v in
                                                        seconds.items()},
              "server_plain_acc": black["server_plain_acc"],
              "blackbox_obfuscated_acc": black["server_obfuscated_acc"],
              "whitebox_obfuscated_acc": white_acc,
              "gap_points": round(100 * (white_acc - black["server_obfuscated_acc"]), 2),
              "queries": black["queries"], "surrogate": black["surrogate"]}
    print(write_result(result, args.out)[1].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
