"""The black-box obfuscator's accuracy against the images queried and the kind of answer.

`benchmarks/blackbox_answers.py` trains one surrogate per point (a query budget and a kind of
answer) from what that server would have returned. This script trains one obfuscator against each
of those surrogates, at one small budget that is the same for every point, plus the white box at
that budget (trained against the real classifier's weights), and measures each through one
`veil serve` of the real classifier on the test split. The obfuscators train on the same public
training images whatever the point's query budget: an obfuscator needs images, not answers, so
only the images sent to the server count as queries.

    python benchmarks/blackbox_obfuscated.py --surrogates runs/blackbox-answers \
        --classifier runs/default-classifier.pt --data ../shared/data/cifar10-jpeg75.zip \
        --out runs/blackbox-obfuscated --points whitebox 2000-probs 10000-probs 50000-probs

Each point's obfuscator trains in OUT/<point>/ and resumes there after a stop (a folder that
already holds a model.pt is measured, not trained). After every point
OUT/blackbox_obfuscated.{json,md,png} are rewritten.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from veil.core.checkpoint import load_checkpoint
from veil.core.runtime import environment
from veil.data import load_dataset
from veil.pipeline.blackbox import server_accuracy
from veil.report.results import write_result
from veil.serve.app import ServerConfig, create_app
from veil.serve.inference import Predictor
from veil.serve.server import BackgroundServer
from veil.train.common import resumable_states
from veil.train.obfuscator import make_config, train_obfuscator

WHITEBOX = "whitebox"


def parse_point(text: str) -> str:
    """`whitebox` or a blackbox_answers.py folder name: BUDGET-ANSWERS (e.g. 10000-topk3)."""
    budget, sep, answers = text.partition("-")
    if text != WHITEBOX and not (sep and budget.isdigit() and answers):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected {WHITEBOX} or BUDGET-ANSWERS, e.g. 10000-label"
        )
    return text


def train_point(args: argparse.Namespace, point: str) -> Path:
    """The point's obfuscator, trained (or resumed) against its surrogate or the classifier."""
    folder = args.out / point
    model = folder / "model.pt"
    if model.exists():
        return model
    target = args.classifier if point == WHITEBOX else args.surrogates / point / "model.pt"
    while args.wait and not Path(target).exists():
        time.sleep(30)  # blackbox_answers.py is still training this point's surrogate
    if not Path(target).exists():
        raise SystemExit(
            f"{target}: no surrogate for {point}; run blackbox_answers.py first "
            "(or pass --wait while it runs)"
        )
    config = make_config(
        "staged",
        classifier=str(target),
        data=args.data,
        out=str(folder),
        train_subset=args.train_subset,
        warm_start={"encoder": args.encoder_epochs},
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
    )
    train_obfuscator(config, resume=bool(resumable_states(folder)), quiet=True)
    return model


def describe(point: str) -> tuple[int | None, str]:
    """(images queried, kind of answer) of a point; the white box queries nothing."""
    if point == WHITEBOX:
        return None, "white box (the classifier's weights)"
    budget, _, answers = point.partition("-")
    return int(budget), answers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--surrogates",
        required=True,
        type=Path,
        help="the --out folder of benchmarks/blackbox_answers.py",
    )
    p.add_argument("--classifier", required=True, help="the real classifier, served")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "--points",
        nargs="+",
        type=parse_point,
        required=True,
        metavar="POINT",
        help="whitebox and/or BUDGET-ANSWERS folders",
    )
    p.add_argument("--train-subset", type=int, default=10_000)
    p.add_argument("--encoder-epochs", type=float, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--eval-images", type=int, default=10_000)
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for a point's surrogate that blackbox_answers.py is still training",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)  # the served classifier too; environment() records it
    test = load_dataset(args.data).test.subset(args.eval_images, args.seed)
    app = create_app(Predictor.from_checkpoint(args.classifier), ServerConfig(max_images=64))
    args.out.mkdir(parents=True, exist_ok=True)
    with BackgroundServer(app) as url:
        result = {
            "schema": "veil.blackbox_obfuscated/1",
            "settings": {k: str(v) for k, v in vars(args).items()},
            "environment": environment(),
            "measured_on": len(test),
            "server_plain_acc": server_accuracy(url, None, test.images, test.labels),
            "points": [],
        }
        for point in args.points:
            t0 = time.perf_counter()
            model = train_point(args, point)
            trained = time.perf_counter() - t0
            queries, answers = describe(point)
            result["points"].append(
                {
                    "point": point,
                    "queries": queries,
                    "answers": answers,
                    "trained_obfuscated_acc": load_checkpoint(model)["metrics"]["obfuscated_acc"],
                    "server_obfuscated_acc": server_accuracy(
                        url,
                        None,
                        test.images,
                        test.labels,
                        model,
                        args.threads,
                        trained_on_surrogate=point != WHITEBOX,
                    ),
                    "train_s_this_process": round(trained, 1),
                }
            )
            print(json.dumps(result["points"][-1]), flush=True)
            # after every point, so that a stopped run keeps what it measured
            write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
