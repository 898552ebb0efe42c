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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.files import atomic_write
from ..core.markdown import table
from ..core.options import add_data, add_quiet, add_threads, parse_warm_start
from ..core.runtime import environment, progress
from ..data import load_dataset
from ..edge.cli import add_server_limits, add_token_options, resolve_token
from ..edge.client import Prediction, VeilClient

QUERIES = "queries.npz"
JOURNAL = "queries.journal"  # the query step's progress until queries.npz is written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classifier-url", required=True, metavar="URL",
                        help="the veil server of the classifier (only /v1/classify is used)")
    add_token_options(parser)
    add_data(parser, what="public images to query with and to measure on", image_size=False)
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder")
    parser.add_argument("--query-budget", type=int, default=10_000, metavar="N",
                        help="training images sent to the server (default: %(default)s)")
    parser.add_argument("--answers", default="probs", metavar="KIND",
                        help=f"what the server's answers are learnt from: {ANSWER_KINDS} "
                             "(default: %(default)s)")
    parser.add_argument("--bad-answers", choices=["error", "skip"], default="error",
                        help="an answer that is not valid (NaN, unknown label, ...): stop with "
                             "an error (default) or skip the image and count it")
    add_server_limits(parser)
    parser.add_argument("--surrogate", default="fastnet", metavar="MODEL",
                        help="zoo classifier distilled from the answers (default: %(default)s)")
    parser.add_argument("--surrogate-epochs", type=int, default=10)
    parser.add_argument("--recipe", default=None, help="obfuscator recipe (default: staged)")
    parser.add_argument("--epochs", type=int, help="obfuscator epochs (default: the recipe's)")
    parser.add_argument("--warm-start", type=parse_warm_start, metavar="STAGE:EPOCHS,...",
                        help="the obfuscator's warm-start stages (default: the recipe's; "
                             "'none': off), e.g. encoder:4")
    parser.add_argument("--batch-size", type=int, help="obfuscator batch size")
    parser.add_argument("--train-subset", type=int, metavar="N",
                        help="public training images the obfuscator trains on (default: all)")
    parser.add_argument("--eval-images", type=int, metavar="N",
                        help="test images sent to measure the real server (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    add_threads(parser)
    add_quiet(parser)


ANSWER_KINDS = "probs, topk:K or label"


def parse_answers(text: str) -> tuple[str, int | None]:
    """--answers: 'probs' (every class's probability), 'topk:K' (the K best with scores) or
    'label' (the top label only, its score ignored)."""
    if text in ("probs", "label"):
        return text, None
    kind, _, k = text.partition(":")
    if kind == "topk" and k.isdigit() and int(k) >= 1:
        return kind, int(k)
    raise ValueError(f"--answers {text!r}: expected {ANSWER_KINDS}")


def answer_target(prediction: Prediction, classes: list[str], kind: str) -> np.ndarray:
    """The soft target a surrogate learns from one answer: a label is one-hot; scores are kept
    and the classes an answer leaves out share what remains evenly."""
    row = np.zeros(len(classes), np.float32)
    if kind == "label":
        row[classes.index(prediction.label)] = 1.0
        return row
    for label, probability in prediction.top_k:
        row[classes.index(label)] = max(probability, 0.0)
    missing = row == 0
    if missing.any():
        row[missing] = max(0.0, 1.0 - row.sum()) / missing.sum()
    return row / row.sum() if row.sum() > 0 else np.full_like(row, 1 / len(row))


@dataclass
class QueryLog:
    """What was sent and answered so far, kept in an append-only journal (one JSON line per
    request before it is sent, one per answer) so a killed run resumes without sending an
    answered image again, and counts every image that ever left exactly (and the rate-limit
    waits of every answered request)."""

    path: Path
    sent: int = 0
    requests: int = 0
    rate_limited: int = 0
    targets: dict[int, list[float] | None] = field(default_factory=dict)  # None: a bad answer

    @classmethod
    def open(cls, path: Path) -> QueryLog:
        log = cls(path)
        good = 0
        if path.exists():
            data = path.read_bytes()
            for line in data.splitlines(keepends=True):
                try:
                    log._replay(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    break  # a line torn by a kill ends the journal; it is cut off below
                good += len(line)
            if good != len(data):
                with open(path, "r+b") as f:
                    f.truncate(good)
        return log

    def _replay(self, record: dict[str, Any]) -> None:
        if "send" in record:
            self.sent += len(record["send"])
            self.requests += 1
        else:
            self.targets.update(zip(record["answer"], record["targets"], strict=True))
            self.rate_limited += record.get("rate_limited", 0)

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._replay(record)


def query(client: VeilClient, images: np.ndarray, classes: list[str], kind: str,
          log: QueryLog, quiet: bool = True) -> None:
    """Ask the server about every image the log has no answer for, one request at a time."""
    pending = [i for i in range(len(images)) if i not in log.targets]
    for start in progress(range(0, len(pending), client.batch_size),
                          math.ceil(len(pending) / client.batch_size), "queries", quiet):
        indices = pending[start:start + client.batch_size]
        payloads = client.obfuscate(images[indices])
        log.append({"send": indices})
        waits = client.rate_limited
        predictions = client.send(payloads, [f"query-{i}" for i in indices])
        log.append({"answer": indices,
                    "targets": [None if p is None else answer_target(p, classes, kind).tolist()
                                for p in predictions],
                    "rate_limited": client.rate_limited - waits})


def server_accuracy(url: str, token: str | None, images: np.ndarray, labels: np.ndarray,
                    obfuscator: str | Path | None = None, threads: int | None = None,
                    trained_on_surrogate: bool = False, **limits: Any) -> float:
    """Top-1 accuracy of the real server on images, sent plain or through the obfuscator
    checkpoint (`limits`: VeilClient's caps). One trained on a surrogate records the
    surrogate, never the server's classifier, so the client's mismatch warning is left out
    for it. A skipped bad answer counts as wrong."""
    send: Any = _as_sent
    if obfuscator is not None:
        from ..edge.obfuscators import TorchObfuscator

        send = TorchObfuscator(obfuscator, threads)
        send = _WithoutClassifierRecord(send) if trained_on_surrogate else send
    with VeilClient(url, send, token, **limits) as client:
        predictions = client.classify(list(images))
    return float(np.mean([p is not None and p.class_index == y
                          for p, y in zip(predictions, labels, strict=True)]))


class _WithoutClassifierRecord:
    """An obfuscator without its record of the classifier it was trained for."""

    def __init__(self, obfuscator: Any) -> None:
        self.obfuscator, self.image_size = obfuscator, obfuscator.image_size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.obfuscator(images)


def _as_sent(images: np.ndarray) -> np.ndarray:
    return images  # the plain image, already 8-bit: what a query without obfuscation sends


def _server_classes(client: VeilClient, n_classes: int) -> list[str]:
    client.check_server()
    classes = client.classes or []
    if len(classes) != n_classes:
        raise ValueError(f"the server at {client.server} classifies {len(classes)} classes, the "
                         f"public data has {n_classes}")
    return classes


def run(args: argparse.Namespace) -> int:
    if args.query_budget < 1:
        raise ValueError(f"--query-budget must be at least 1, got {args.query_budget}")
    parse_answers(args.answers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    public = load_dataset(args.data)
    train = public.train.subset(args.query_budget, args.seed)
    queries = _query_step(args, out, train.images, len(public.classes))
    surrogate = _surrogate_step(args, out)
    obfuscator = _obfuscator_step(args, out, surrogate)
    report = _measure_step(args, out, public, obfuscator, surrogate)
    report["queries"] = {**queries, "measuring_images_sent": 2 * report["measured_on"]}
    atomic_write(out / "blackbox.json", json.dumps(report, indent=1) + "\n")
    atomic_write(out / "blackbox.md", _markdown(report))
    if not args.quiet:
        print(_markdown(report))
    return 0


def _query_step(args: argparse.Namespace, out: Path, images: np.ndarray, n_classes: int
                ) -> dict[str, int]:
    """The surrogate's training set queried once (resumed from OUT/queries.journal after a
    kill): OUT/queries.npz holds the images with a valid answer and their targets."""
    path = out / QUERIES
    if not path.exists():
        kind, k = parse_answers(args.answers)
        top_k = {"probs": n_classes, "label": 1}.get(kind, k)
        log = QueryLog.open(out / JOURNAL)
        with _client(args, _as_sent, top_k=top_k) as client:
            classes = _server_classes(client, n_classes)
            query(client, images, classes, kind, log, args.quiet)
        valid = [i for i in range(len(images)) if log.targets[i] is not None]
        buffer = io.BytesIO()
        np.savez(buffer, images=images[valid],
                 probs=np.array([log.targets[i] for i in valid], np.float32).reshape(
                     len(valid), n_classes),
                 requests=np.int64(log.requests), sent=np.int64(log.sent),
                 bad_answers=np.int64(len(images) - len(valid)),
                 rate_limited=np.int64(log.rate_limited), answers=np.str_(args.answers))
        atomic_write(path, buffer.getvalue())
        (out / JOURNAL).unlink()
    with np.load(path, allow_pickle=False) as z:
        if len(z["images"]) == 0:
            raise ValueError(f"the server at {args.classifier_url} gave no valid answer to any "
                             f"of {int(z['sent'])} images")
        return {"training_images_sent": int(z["sent"]), "training_requests": int(z["requests"]),
                "bad_answers": int(z["bad_answers"]), "rate_limited": int(z["rate_limited"]),
                "answers": str(z["answers"])}


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    """VeilClient's caps from the command's options."""
    return {"timeout": args.timeout, "request_timeout": args.request_timeout,
            "max_response_bytes": args.max_response_bytes, "bad_answers": args.bad_answers}


def _client(args: argparse.Namespace, send: Any, top_k: int = 1) -> VeilClient:
    return VeilClient(args.classifier_url, send, resolve_token(args), top_k=top_k,
                      **_limits(args))


def _surrogate_step(args: argparse.Namespace, out: Path) -> Path:
    from ..train.common import resumable_states
    from ..train.surrogate import make_surrogate_config, train_surrogate

    folder = out / "surrogate"
    if not (folder / "model.pt").exists():
        config = make_surrogate_config(args.surrogate, out / QUERIES, data=args.data,
                                       out=str(folder), epochs=args.surrogate_epochs,
                                       seed=args.seed, threads=args.threads)
        train_surrogate(config, resume=bool(resumable_states(folder)), quiet=args.quiet)
    return folder / "model.pt"


def _obfuscator_step(args: argparse.Namespace, out: Path, surrogate: Path) -> Path:
    from ..train.common import resumable_states
    from ..train.obfuscator import DEFAULT_RECIPE, make_config, train_obfuscator

    folder = out / "obfuscator"
    if not (folder / "model.pt").exists():
        config = make_config(args.recipe or DEFAULT_RECIPE, classifier=str(surrogate),
                             data=args.data, out=str(folder), epochs=args.epochs,
                             warm_start=args.warm_start, batch_size=args.batch_size,
                             train_subset=args.train_subset, seed=args.seed,
                             threads=args.threads)
        train_obfuscator(config, resume=bool(resumable_states(folder)), quiet=args.quiet)
    return folder / "model.pt"


def _measure_step(args: argparse.Namespace, out: Path, public, obfuscator: Path,
                  surrogate: Path) -> dict[str, Any]:
    from ..core.checkpoint import load_checkpoint

    test = public.test.subset(args.eval_images, args.seed)
    url, token, limits = args.classifier_url, resolve_token(args), _limits(args)
    trained = load_checkpoint(obfuscator)["metrics"]
    return {
        "schema": "veil-blackbox/1", "server": url, "data": str(args.data), "seed": args.seed,
        "measured_on": int(len(test)),
        "server_plain_acc": server_accuracy(url, token, test.images, test.labels, **limits),
        "server_obfuscated_acc": server_accuracy(url, token, test.images, test.labels,
                                                 obfuscator, args.threads,
                                                 trained_on_surrogate=True, **limits),
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
        f"{report['surrogate']['epochs']} epochs, from answers of kind {q['answers']}; "
        f"{q['bad_answers']:,} invalid answers skipped, {q['rate_limited']:,} rate-limit "
        f"waits), {q['measuring_images_sent']:,} test images "
        f"sent to measure ({report['measured_on']:,} plain, the same obfuscated). "
        f"Seed {report['seed']}.", "",
        *table(["accuracy on the public test split", "%"], rows, text_columns=1), "",
        f"Co-trained deobfuscator SSIM: {o['deobfuscator_ssim']:.3f} (a post-hoc attacker: "
        "`veil attack`).", ""])
