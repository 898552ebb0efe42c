"""What a black-box surrogate learns from fewer queries and from answers that carry less.

A full `veil blackbox` run queries the whole public training split once and keeps every answered
probability (its `queries.npz`). What a run with a smaller `--query-budget` would have sent is a
subset of those same images (the rule of `Split.subset`), and what a server answering only
`topk:K` or `label` would have returned is a cut of those same probabilities (the pipeline's own
`answer_target`), so each point here trains a surrogate from the answers it would have had,
without querying again. Each surrogate is measured on the full public test split: its own
accuracy, and its top-1 agreement with the real classifier (the fidelity that an obfuscator
trained against it has to transfer through).

    python benchmarks/blackbox_answers.py --queries runs/blackbox-full/blackbox/queries.npz \
        --classifier runs/default-classifier.pt --data ../shared/data/cifar10-jpeg75.zip \
        --out runs/blackbox-answers --points 2000:probs 10000:probs 50000:label

Each point's surrogate trains in OUT/<budget>-<answers>/ and resumes there after a stop (a
folder that already holds a model.pt is measured, not trained: the full run's own surrogate can
stand for its point). After every point OUT/blackbox_answers.{json,md,png} are rewritten.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch

from veil.core.files import atomic_write
from veil.core.runtime import environment
from veil.data import TensorLoader, load_dataset
from veil.data.dataset import subset_indices
from veil.edge.client import Prediction
from veil.models.loading import load_classifier
from veil.pipeline.blackbox import answer_target, parse_answers
from veil.report.results import write_result
from veil.train.common import resumable_states
from veil.train.surrogate import load_queries, make_surrogate_config, train_surrogate


def parse_point(text: str) -> tuple[int, str]:
    budget, sep, answers = text.partition(":")
    if not sep or not budget.isdigit() or int(budget) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected BUDGET:ANSWERS, e.g. 10000:label")
    try:
        parse_answers(answers)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return int(budget), answers


def answers_as_returned(probs: np.ndarray, classes: list[str], answers: str) -> np.ndarray:
    """The targets a server answering `answers` would have given for these probabilities."""
    kind, k = parse_answers(answers)
    if kind == "probs":
        return probs
    top = min(k or 1, len(classes))
    rows = []
    for p in probs:
        best = np.argsort(-p, kind="stable")[:top]
        prediction = Prediction(
            "",
            classes[best[0]],
            int(best[0]),
            float(p[best[0]]),
            [(classes[i], float(p[i])) for i in best],
        )
        rows.append(answer_target(prediction, classes, kind))
    return np.stack(rows)


def point_queries(
    images: np.ndarray, probs: np.ndarray, budget: int, answers: str, classes: list[str], seed: int
) -> bytes:
    """The .npz a run with this budget and kind of answers would have trained from, given the
    whole public training split's images in order and their answers."""
    idx = subset_indices(len(images), budget, seed)
    buffer = io.BytesIO()
    np.savez(buffer, images=images[idx], probs=answers_as_returned(probs[idx], classes, answers))
    return buffer.getvalue()


def top1(model: torch.nn.Module, loader: TensorLoader) -> np.ndarray:
    """The model's top-1 class for each of the loader's images, in order."""
    with torch.inference_mode():
        return np.concatenate([model(x).argmax(1).numpy() for x, _ in loader])


def agreement(model: torch.nn.Module, reference: np.ndarray, loader: TensorLoader) -> float:
    """Top-1 agreement of `model` with the reference predictions over the loader's images."""
    return float(np.mean(top1(model, loader) == reference))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--queries",
        required=True,
        type=Path,
        help="queries.npz of a veil blackbox run over the whole training split",
    )
    p.add_argument("--classifier", required=True, help="the server's classifier (to compare)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument(
        "--points",
        nargs="+",
        type=parse_point,
        required=True,
        metavar="BUDGET:ANSWERS",
        help="e.g. 2000:probs 50000:label 50000:topk:3",
    )
    p.add_argument("--surrogate", default="fastnet")
    p.add_argument("--surrogate-epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    public = load_dataset(args.data)
    classes = list(public.classes)
    images, probs = load_queries(args.queries)
    if not np.array_equal(images, public.train.images):
        p.error(
            "the queries are not the whole public training split in order; run veil "
            "blackbox with a --query-budget of at least the split's size"
        )
    test = TensorLoader(public.test, 500)
    reference = top1(load_classifier(args.classifier, expected_classes=public.classes)[0], test)
    result = {
        "schema": "veil.blackbox_answers/1",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "environment": environment(),
        "server_test_acc": float(np.mean(reference == public.test.labels)),
        "points": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for budget, answers in args.points:
        folder = args.out / f"{budget}-{answers.replace(':', '')}"
        model = folder / "model.pt"
        if not model.exists():
            folder.mkdir(parents=True, exist_ok=True)
            path = folder.with_suffix(".npz")
            atomic_write(path, point_queries(images, probs, budget, answers, classes, args.seed))
            config = make_surrogate_config(
                args.surrogate,
                path,
                data=args.data,
                out=str(folder),
                epochs=args.surrogate_epochs,
                seed=args.seed,
                threads=args.threads,
            )
            train_surrogate(config, resume=bool(resumable_states(folder)), quiet=True)
        surrogate, payload = load_classifier(model, expected_classes=public.classes)
        result["points"].append(
            {
                "queries": budget,
                "answers": answers,
                "surrogate_test_acc": payload["metrics"]["test_acc"],
                "agreement_with_server_on_test": agreement(surrogate, reference, test),
            }
        )
        print(json.dumps(result["points"][-1]), flush=True)
        # after every point, so that a stopped run keeps what it measured
        write_result(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
