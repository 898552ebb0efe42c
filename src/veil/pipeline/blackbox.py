"""`veil blackbox`: an obfuscator for a classifier you can only query (the paper's stated
weakness: it needs the classifier's weights).

The cloud model is reachable only through `veil serve`'s `/v1/classify`. Before deployment, on
public images only (never a user's: the obfuscator is trained before anyone uses it):

1. query: send up to `--query-budget` public training images (plain, 8-bit PNGs, as the
   server takes them) and keep the probabilities it answers (top-k over every class);
2. surrogate: distil a zoo classifier from those answers (`train.surrogate`);
3. obfuscator: train an obfuscator against the frozen surrogate (`veil train obfuscator`'s
   recipe and options);
4. measure: the real server's accuracy on the public test split, plain and obfuscated (what a
   device would send), beside the surrogate's.

Every image sent is counted (queries for training and for measuring apart) in
OUT/blackbox.json. Finished steps are reused when the command is run again with the same --out.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..core import env
from ..core.files import atomic_write
from ..core.markdown import table
from ..core.options import add_data, add_quiet, add_threads
from ..core.runtime import environment
from ..data import load_dataset
from ..edge.client import VeilClient

QUERIES = "queries.npz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classifier-url", required=True, metavar="URL",
                        help="the veil server of the classifier (only /v1/classify is used)")
    parser.add_argument("--token", default=env.token(),
                        help="the server's bearer token, if it has one (default: $VEIL_TOKEN)")
    add_data(parser, what="public images to query with and to measure on", image_size=False)
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder")
    parser.add_argument("--query-budget", type=int, default=10_000, metavar="N",
                        help="training images sent to the server (default: %(default)s)")
    parser.add_argument("--surrogate", default="fastnet", metavar="MODEL",
                        help="zoo classifier distilled from the answers (default: %(default)s)")
    parser.add_argument("--surrogate-epochs", type=int, default=10)
    parser.add_argument("--recipe", default=None, help="obfuscator recipe (default: staged)")
    parser.add_argument("--epochs", type=int, help="obfuscator epochs (default: the recipe's)")
    parser.add_argument("--encoder-epochs", type=float, help="the staged recipe's warm start")
    parser.add_argument("--batch-size", type=int, help="obfuscator batch size")
    parser.add_argument("--train-subset", type=int, metavar="N",
                        help="public training images the obfuscator trains on (default: all)")
    parser.add_argument("--eval-images", type=int, metavar="N",
                        help="test images sent to measure the real server (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    add_threads(parser)
    add_quiet(parser)


def query(url: str, token: str | None, images: np.ndarray, n_classes: int
          ) -> tuple[np.ndarray, int]:
    """The server's probabilities (N, classes) for plain images, and the number of requests
    that took; classes it leaves out of its top-k share the remaining probability evenly."""
    with VeilClient(url, _as_sent, token, top_k=n_classes) as client:
        classes = _server_classes(client, n_classes)
        predictions = client.classify(list(images))
        requests = math.ceil(len(images) / client.batch_size)  # the server's per-request cap
    probs = np.zeros((len(images), n_classes), np.float32)
    for row, p in zip(probs, predictions, strict=True):
        for label, probability in p.top_k:
            row[classes.index(label)] = probability
        missing = row == 0
        if missing.any():
            row[missing] = max(0.0, 1.0 - row.sum()) / missing.sum()
    return probs / probs.sum(1, keepdims=True), requests


def server_accuracy(url: str, token: str | None, images: np.ndarray, labels: np.ndarray,
                    obfuscator: str | Path | None = None, threads: int | None = None,
                    trained_on_surrogate: bool = False) -> float:
    """Top-1 accuracy of the real server on images, sent plain or through the obfuscator
    checkpoint. One trained on a surrogate records the surrogate, never the server's classifier,
    so the client's mismatch warning is left out for it."""
    send: Any = _as_sent
    if obfuscator is not None:
        from ..edge.obfuscators import TorchObfuscator

        send = TorchObfuscator(obfuscator, threads)
        send = _WithoutClassifierRecord(send) if trained_on_surrogate else send
    with VeilClient(url, send, token) as client:
        predictions = client.classify(list(images))
    return float(np.mean([p.class_index == y for p, y in zip(predictions, labels, strict=True)]))


class _WithoutClassifierRecord:
    """An obfuscator without its record of the classifier it was trained for."""

    def __init__(self, obfuscator: Any) -> None:
        self.obfuscator, self.image_size = obfuscator, obfuscator.image_size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.obfuscator(images)


def _as_sent(images: np.ndarray) -> np.ndarray:
    return images  # the plain image, already 8-bit: what a query without obfuscation sends


def _server_classes(client: VeilClient, n_classes: int) -> list[str]:
    classes = client.health().get("classes") or []
    if len(classes) != n_classes:
        raise ValueError(f"the server classifies {len(classes)} classes, the public data has "
                         f"{n_classes}")
    return list(classes)


def run(args: argparse.Namespace) -> int:
    if args.query_budget < 1:
        raise ValueError(f"--query-budget must be at least 1, got {args.query_budget}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    public = load_dataset(args.data)
    train = public.train.subset(args.query_budget, args.seed)
    sent_for_training, requests = _query_step(args, out, train.images, len(public.classes))
    surrogate = _surrogate_step(args, out)
    obfuscator = _obfuscator_step(args, out, surrogate)
    report = _measure_step(args, out, public, obfuscator, surrogate)
    report["queries"] = {"training_images_sent": sent_for_training,
                         "training_requests": requests,
                         "measuring_images_sent": 2 * report["measured_on"]}
    atomic_write(out / "blackbox.json", json.dumps(report, indent=1) + "\n")
    atomic_write(out / "blackbox.md", _markdown(report))
    if not args.quiet:
        print(_markdown(report))
    return 0


def _query_step(args: argparse.Namespace, out: Path, images: np.ndarray, n_classes: int
                ) -> tuple[int, int]:
    """(images sent, requests made) for the surrogate's training set, queried once."""
    path = out / QUERIES
    if not path.exists():
        probs, requests = query(args.classifier_url, args.token, images, n_classes)
        buffer = io.BytesIO()
        np.savez(buffer, images=images, probs=probs, requests=np.int64(requests))
        atomic_write(path, buffer.getvalue())
    with np.load(path, allow_pickle=False) as z:
        return int(len(z["images"])), int(z["requests"])


def _surrogate_step(args: argparse.Namespace, out: Path) -> Path:
    from ..train.surrogate import make_surrogate_config, train_surrogate

    folder = out / "surrogate"
    if not (folder / "model.pt").exists():
        config = make_surrogate_config(args.surrogate, out / QUERIES, data=args.data,
                                       out=str(folder), epochs=args.surrogate_epochs,
                                       seed=args.seed, threads=args.threads)
        train_surrogate(config, resume=(folder / "last.pt").exists(), quiet=args.quiet)
    return folder / "model.pt"


def _obfuscator_step(args: argparse.Namespace, out: Path, surrogate: Path) -> Path:
    from ..train.obfuscator import DEFAULT_RECIPE, make_config, train_obfuscator

    folder = out / "obfuscator"
    if not (folder / "model.pt").exists():
        config = make_config(args.recipe or DEFAULT_RECIPE, classifier=str(surrogate),
                             data=args.data, out=str(folder), epochs=args.epochs,
                             encoder_epochs=args.encoder_epochs, batch_size=args.batch_size,
                             train_subset=args.train_subset, seed=args.seed,
                             threads=args.threads)
        train_obfuscator(config, resume=(folder / "last.pt").exists(), quiet=args.quiet)
    return folder / "model.pt"


def _measure_step(args: argparse.Namespace, out: Path, public, obfuscator: Path,
                  surrogate: Path) -> dict[str, Any]:
    from ..core.checkpoint import load_checkpoint

    test = public.test.subset(args.eval_images, args.seed)
    url, token = args.classifier_url, args.token
    trained = load_checkpoint(obfuscator)["metrics"]
    return {
        "schema": "veil-blackbox/1", "server": url, "data": str(args.data), "seed": args.seed,
        "measured_on": int(len(test)),
        "server_plain_acc": server_accuracy(url, token, test.images, test.labels),
        "server_obfuscated_acc": server_accuracy(url, token, test.images, test.labels,
                                                 obfuscator, args.threads,
                                                 trained_on_surrogate=True),
        "surrogate": {"model": args.surrogate, "epochs": args.surrogate_epochs,
                      "test_acc": load_checkpoint(surrogate)["metrics"]["test_acc"],
                      "path": str(surrogate)},
        "obfuscator": {"path": str(obfuscator),
                       "surrogate_plain_acc": trained["plain_acc"],
                       "surrogate_obfuscated_acc": trained["obfuscated_acc"],
                       "deobfuscator_ssim": trained["deobfuscator_ssim"]},
        "environment": environment(),
    }


def _markdown(report: dict[str, Any]) -> str:
    q, o = report["queries"], report["obfuscator"]
    rows = [["real server, plain images", f"{100 * report['server_plain_acc']:.2f}"],
            ["real server, obfuscated images", f"{100 * report['server_obfuscated_acc']:.2f}"],
            ["surrogate, plain images (its test split)",
             f"{100 * report['surrogate']['test_acc']:.2f}"],
            ["surrogate, obfuscated images", f"{100 * o['surrogate_obfuscated_acc']:.2f}"]]
    return "\n".join([
        "# veil blackbox: an obfuscator for a classifier that can only be queried", "",
        f"Server {report['server']}; {q['training_images_sent']:,} public training images sent "
        f"to distil the surrogate ({report['surrogate']['model']}, "
        f"{report['surrogate']['epochs']} epochs), {q['measuring_images_sent']:,} test images "
        f"sent to measure ({report['measured_on']:,} plain, the same obfuscated). "
        f"Seed {report['seed']}.", "",
        *table(["accuracy on the public test split", "%"], rows, text_columns=1), "",
        f"Co-trained deobfuscator SSIM: {o['deobfuscator_ssim']:.3f} (a post-hoc attacker: "
        "`veil attack`).", ""])
