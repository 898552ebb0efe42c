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
from veil.core.files import atomic_write
from veil.core.runtime import environment
from veil.data import load_dataset
from veil.pipeline.blackbox import server_accuracy
from veil.report.figures import agg_figure
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


def markdown(result: dict) -> str:
    lines = [
        f"Real classifier on plain test images: {100 * result['server_plain_acc']:.2f} %.",
        "",
        "| images queried | answers | on the classifier it was trained against (test) | "
        "real server, obfuscated test images |",
        "|---:|---|---:|---:|",
    ]
    for p in sorted(result["points"], key=lambda p: (p["queries"] or 0, p["answers"])):
        queries = "—" if p["queries"] is None else f"{p['queries']:,}"
        lines.append(
            f"| {queries} | {p['answers']} | "
            f"{100 * p['trained_obfuscated_acc']:.2f} % | "
            f"{100 * p['server_obfuscated_acc']:.2f} % |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Obfuscated accuracy on the real server against the images queried, one line per kind of
    answer; the white box and the plain images as horizontal lines."""
    fig = agg_figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    black = [p for p in result["points"] if p["queries"] is not None]
    for answers in sorted({p["answers"] for p in black}):
        points = sorted(
            (p["queries"], 100 * p["server_obfuscated_acc"])
            for p in black
            if p["answers"] == answers
        )
        ax.plot(
            [q for q, _ in points],
            [a for _, a in points],
            marker="o",
            label=f"black box, answers: {answers}",
        )
    for p in result["points"]:
        if p["queries"] is None:
            ax.axhline(
                100 * p["server_obfuscated_acc"],
                color="black",
                linestyle="--",
                label="white box, same budget",
            )
    ax.axhline(100 * result["server_plain_acc"], color="gray", linestyle=":", label="plain images")
    budgets = sorted({p["queries"] for p in black})
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("public training images queried")
    ax.set_ylabel("accuracy on obfuscated images, %")
    ax.set_title("real classifier through its server, test split", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})


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
            atomic_write(args.out / "blackbox_obfuscated.json", json.dumps(result, indent=1) + "\n")
            atomic_write(args.out / "blackbox_obfuscated.md", markdown(result))
            plot(result, args.out / "blackbox_obfuscated.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
