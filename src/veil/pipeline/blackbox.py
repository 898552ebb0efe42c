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
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.files import atomic_write, read_bounded, recorded_path
from ..core.options import DATA_HELP, parse_warm_start, quiet_option, threads_option
from ..core.runtime import environment, progress
from ..core.settings import add_options, option
from ..core.text import printable, shown
from ..data import load_dataset
from ..edge.cli import add_server_limits, add_token_options, resolve_token
from ..edge.client import MAX_RESPONSE_BYTES, REQUEST_TIMEOUT, Prediction, VeilClient
from ..report.kinds.evaluation import BLACKBOX_SCHEMA, blackbox_markdown
from ..report.results import write_result
from ..train.surrogate import load_queries, read_npz, target_problem

QUERIES = "queries.npz"
JOURNAL = "queries.journal"  # the query step's progress until queries.npz is written
MAX_JOURNAL_BYTES = 2**30  # two lines a request: a million images of 100 classes fit
COUNTS = ("requests", "sent", "bad_answers", "rate_limited")


ANSWER_KINDS = "probs, topk:K or label"


@dataclass
class BlackboxSettings:
    """One `veil blackbox` run: the options of the command, typed, with its defaults (the
    Python API, `veil.train_blackbox_obfuscator`, takes them by name)."""

    classifier_url: str = option(
        help="the veil server of the classifier (only /v1/classify is used)", metavar="URL")
    data: str | None = option(help="public images to query with and to measure on: "
                                    f"{DATA_HELP} (default: $VEIL_DATA or cifar10)",
                              metavar="SOURCE")
    out: str = option(help="run folder", metavar="DIR")
    token: str | None = None  # --token-file or $VEIL_TOKEN, never argv
    query_budget: int = option(10_000, "training images sent to the server", metavar="N")
    answers: str = option("probs", f"what the server's answers are learnt from: {ANSWER_KINDS}",
                          metavar="KIND")
    bad_answers: Literal["error", "skip"] = option(
        "error", "an answer that is not valid (NaN, unknown label, ...): stop with an error "
                 "(default) or skip the image and count it")
    timeout: float = 30.0  # the server limits: edge.cli.add_server_limits declares their flags
    request_timeout: float = REQUEST_TIMEOUT
    max_response_bytes: int = MAX_RESPONSE_BYTES
    surrogate: str = option("fastnet", "zoo classifier distilled from the answers",
                            metavar="MODEL")
    surrogate_epochs: int = option(10, "epochs of the surrogate's distillation")
    recipe: str | None = option(None, "obfuscator recipe (default: staged)")
    epochs: int | None = option(None, "obfuscator epochs (default: the recipe's)")
    warm_start: dict[str, float] | None = option(
        None, "the obfuscator's warm-start stages (default: the recipe's; 'none': off), e.g. "
              "encoder:4", metavar="STAGE:EPOCHS,...", parse=parse_warm_start)
    batch_size: int | None = option(None, "obfuscator batch size")
    train_subset: int | None = option(
        None, "public training images the obfuscator trains on (default: all)", metavar="N")
    eval_images: int | None = option(
        None, "test images sent to measure the real server (default: all)", metavar="N")
    seed: int = option(0, "seed of the queries, the surrogate and the obfuscator")
    threads: int | None = threads_option()
    quiet: bool = quiet_option()
    # refinement rounds: the server answers the obfuscator's own (augmented) images, the
    # surrogate is fine-tuned on them and the plain answers, the obfuscator one epoch against it
    refine_rounds: int = option(
        0, "after training, N rounds of: the server answers the obfuscator's own images (one "
           "more query of --query-budget images each), the surrogate is fine-tuned on them, the "
           "obfuscator one epoch against it (default: 0; results/cpu/blackbox/refine/: one round "
           "closed the gap to the white box to 0.4 point)", metavar="N")
    refine_surrogate_epochs: int = 2
    refine_surrogate_lr: float = 0.04
    refine_lr: float = 5e-4

    def __post_init__(self) -> None:
        if self.query_budget < 1:
            raise ValueError(f"--query-budget must be at least 1, got {self.query_budget}")
        parse_answers(self.answers)
        if self.refine_rounds < 0:
            raise ValueError(f"--refine-rounds must be at least 0, got {self.refine_rounds}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BlackboxSettings:
        """The command line's settings (the token from --token-file or $VEIL_TOKEN)."""
        names = {f.name for f in fields(cls)} - {"token"}
        return cls(token=resolve_token(args), **{k: v for k, v in vars(args).items()
                                                 if k in names})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, BlackboxSettings, ["classifier_url"])
    add_token_options(parser)
    add_options(parser, BlackboxSettings, ["data", "out", "query_budget", "answers",
                                           "bad_answers"])
    add_server_limits(parser)
    add_options(parser, BlackboxSettings, [
        "surrogate", "surrogate_epochs", "recipe", "epochs", "warm_start", "batch_size",
        "train_subset", "eval_images", "seed", "refine_rounds", "threads", "quiet"])


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


class JournalError(ValueError):
    """One record of a query journal that the run cannot have written."""


@dataclass
class QueryLog:
    """What was sent and answered so far, kept in an append-only journal (one JSON line per
    request before it is sent, one per answer) so a killed run resumes without sending an
    answered image again, and counts every image that ever left exactly (and the rate-limit
    waits of every answered request).

    Read back, the journal is trusted no more than a server: with `run` given, its first line
    must name that run; every answer must follow the send record of the same images; targets
    must pass the live rule (`target_problem`), indices be images of the run. Only a last line
    a kill tore mid-write (no newline) is cut off; any other bad line is an error naming the
    file and the line, since dropping it could drop send records and undercount."""

    path: Path
    run: str | None = None  # the run's fingerprint, the journal's first line
    n_images: int | None = None  # the run's images (indices below), where known
    n_classes: int | None = None  # the length of every target, where known
    sent: int = 0
    requests: int = 0
    rate_limited: int = 0
    targets: dict[int, list[float] | None] = field(default_factory=dict)  # None: a bad answer
    pending: list[int] | None = None  # the last send record's images, until answered
    records: int = 0
    named: bool = False  # whether the first line names the run

    @classmethod
    def open(cls, path: Path, run: str | None = None, n_images: int | None = None,
             n_classes: int | None = None) -> QueryLog:
        log = cls(path, run, n_images, n_classes)
        if path.exists():
            log._read(read_bounded(path, MAX_JOURNAL_BYTES))
        if run is not None and not log.named:
            if log.records:
                raise ValueError(f"{path}: names no run (written by an older veil?); move it "
                                 "away to query again")
            log.append({"run": run})
        return log

    def _read(self, data: bytes) -> None:
        # a kill can tear only the last write, which then lacks its newline: a send record
        # torn so was never followed by its request, an answer's images are counted as sent
        *lines, torn = data.split(b"\n")
        for number, line in enumerate(lines, 1):
            try:
                self._replay(json.loads(line))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{self.path}, line {number}: {printable(str(e))[:160]}; the "
                                 "journal is damaged or was edited (move it away to query "
                                 "again)") from None
        if torn:
            with open(self.path, "r+b") as f:
                f.truncate(len(data) - len(torn))

    def _replay(self, record: Any) -> None:
        if not isinstance(record, dict):
            raise JournalError("not a JSON object")
        if "run" in record:
            self._header(record["run"])
        elif "send" in record:
            indices = self._indices(record["send"])
            answered = [i for i in indices if i in self.targets]
            if answered:
                raise JournalError(f"sends image {answered[0]} again, which has an answer")
            self.sent += len(indices)
            self.requests += 1
            self.pending = indices
        elif "answer" in record:
            self._answer(self._indices(record["answer"]), record.get("targets"),
                         record.get("rate_limited", 0))
        else:
            raise JournalError("neither a send nor an answer record")
        self.records += 1

    def _header(self, run: Any) -> None:
        if self.records:
            raise JournalError("a run header after the first line")
        if self.run is not None and run != self.run:
            raise JournalError("written for another run (other public data, --query-budget, "
                               "--seed or --answers)")
        self.named = True

    def _answer(self, indices: list[int], targets: Any, waits: Any) -> None:
        if indices != self.pending:
            raise JournalError("an answer without the send record of its images")
        if not isinstance(targets, list) or len(targets) != len(indices):
            raise JournalError(f"{len(indices)} images answered, but not one target each")
        for index, target in zip(indices, targets, strict=True):
            problem = None if target is None else target_problem(np.asarray([target]))
            if not problem and target is not None and self.n_classes not in (None, len(target)):
                problem = f"{len(target)} classes, the run's data has {self.n_classes}"
            if problem:
                raise JournalError(f"the target of image {index}: {problem}")
        if isinstance(waits, bool) or not isinstance(waits, int) or waits < 0:
            raise JournalError(f"rate_limited {shown(waits)} is not a count")
        self.targets.update(zip(indices, targets, strict=True))
        self.rate_limited += waits
        self.pending = None

    def _indices(self, value: Any) -> list[int]:
        if (not isinstance(value, list) or not value
                or not all(type(i) is int and 0 <= i < (self.n_images or 2**63) for i in value)
                or len(set(value)) != len(value)):
            raise JournalError(f"images {shown(value)} are not distinct indices of the run's "
                               "images")
        return value

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
    train_blackbox(BlackboxSettings.from_args(args))
    return 0


def train_blackbox(args: BlackboxSettings) -> dict[str, Any]:
    """Query the server, distil a surrogate, train the obfuscator against it, measure it on
    the server; every step resumes. Returns the report (also OUT/blackbox.json and .md)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    public = load_dataset(args.data)
    train = public.train.subset(args.query_budget, args.seed)
    queries = _query_step(args, out, train.images, len(public.classes))
    surrogate = _surrogate_step(args, out)
    obfuscator = _obfuscator_step(args, out, surrogate)
    rounds = []
    for r in range(1, args.refine_rounds + 1):
        obfuscator, surrogate, sent = _refine_round(args, out / f"refine{r}", train.images,
                                                    len(public.classes), obfuscator, surrogate, r)
        rounds.append({"round": r, "images_sent": sent, "obfuscator": str(obfuscator),
                       "surrogate": str(surrogate)})
    report = _measure_step(args, out, public, obfuscator, surrogate)
    report["queries"] = {**queries, "measuring_images_sent": 2 * report["measured_on"],
                         "refinement_images_sent": sum(r["images_sent"] for r in rounds)}
    report["refinement"] = rounds
    write_result(report, out)
    if not args.quiet:
        print(blackbox_markdown(report))
    return report


def _query_step(args: BlackboxSettings, out: Path, images: np.ndarray, n_classes: int
                ) -> dict[str, int]:
    """The surrogate's training set queried once (resumed from OUT/queries.journal after a
    kill): OUT/queries.npz holds the images with a valid answer and their targets, bound to
    the run (its images and --answers) like the journal."""
    path, run = out / QUERIES, run_id(images, n_classes, args.answers)
    if not path.exists():
        kind, k = parse_answers(args.answers)
        top_k = {"probs": n_classes, "label": 1}.get(kind, k)
        log = QueryLog.open(out / JOURNAL, run, len(images), n_classes)
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
                 rate_limited=np.int64(log.rate_limited), answers=np.str_(args.answers),
                 run=np.str_(run))
        atomic_write(path, buffer.getvalue())
        (out / JOURNAL).unlink()
    counts = read_queries(path, run, images, n_classes)
    if counts["bad_answers"] == len(images):
        raise ValueError(f"the server at {args.classifier_url} gave no valid answer to any "
                         f"of {counts['sent']} images")
    return {"training_images_sent": counts["sent"], "training_requests": counts["requests"],
            "bad_answers": counts["bad_answers"], "rate_limited": counts["rate_limited"],
            "answers": args.answers}


def run_id(images: np.ndarray, n_classes: int, answers: str) -> str:
    """What binds a run's stored queries to it: the images it queries, the answers asked."""
    digest = hashlib.sha256(json.dumps([answers, n_classes, images.shape]).encode())
    digest.update(np.ascontiguousarray(images).data)
    return digest.hexdigest()


def read_queries(path: Path, run: str, images: np.ndarray, n_classes: int) -> dict[str, int]:
    """A finished query step's counts, once its .npz is shown to be this run's and to add up
    (every check names the file)."""
    arrays = read_npz(path, ("run", *COUNTS))
    if arrays["run"].shape != () or str(arrays["run"]) != run:
        raise ValueError(f"{path}: written for another run (other public data, --query-budget, "
                         "--seed or --answers); move it away to query again")
    counts = {}
    for name in COUNTS:
        value = arrays[name]
        if value.shape != () or value.dtype.kind not in "iu" or int(value) < 0:
            raise ValueError(f"{path}: {name} {shown(value.tolist())} is not a count")
        counts[name] = int(value)
    if counts["bad_answers"] < len(images):
        kept, probs = load_queries(path)
        if kept.shape[1:] != images.shape[1:] or probs.shape[1] != n_classes:
            raise ValueError(f"{path}: images {kept.shape[1:]} with {probs.shape[1]} classes, "
                             f"the run's are {images.shape[1:]} with {n_classes}")
        answered = len(kept) + counts["bad_answers"]
    else:
        answered = counts["bad_answers"]
    if answered != len(images) or not 1 <= counts["requests"] <= counts["sent"] \
            or counts["sent"] < len(images):
        raise ValueError(f"{path}: counts that do not add up for {len(images)} images "
                         f"({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return counts


def _limits(args: BlackboxSettings) -> dict[str, Any]:
    """VeilClient's caps from the command's options."""
    return {"timeout": args.timeout, "request_timeout": args.request_timeout,
            "max_response_bytes": args.max_response_bytes, "bad_answers": args.bad_answers}


def _client(args: BlackboxSettings, send: Any, top_k: int = 1) -> VeilClient:
    return VeilClient(args.classifier_url, send, args.token, top_k=top_k,
                      **_limits(args))


def _surrogate_step(args: BlackboxSettings, out: Path) -> Path:
    from ..train.common import resumable_states
    from ..train.surrogate import make_surrogate_config, train_surrogate

    folder = out / "surrogate"
    if not (folder / "model.pt").exists():
        config = make_surrogate_config(args.surrogate, out / QUERIES, data=args.data,
                                       out=str(folder), epochs=args.surrogate_epochs,
                                       seed=args.seed, threads=args.threads)
        train_surrogate(config, resume=bool(resumable_states(folder)), quiet=args.quiet)
    return folder / "model.pt"


def _obfuscator_step(args: BlackboxSettings, out: Path, surrogate: Path) -> Path:
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


def _refine_round(args: BlackboxSettings, folder: Path, images: np.ndarray, n_classes: int,
                  obfuscator: Path, surrogate: Path, round_: int) -> tuple[Path, Path, int]:
    """One refinement round in `folder` (every step resumes): the server's answers to the
    obfuscator's own images, each cropped and flipped as in training first; the surrogate
    fine-tuned on those and on the plain answers (no augmentation: a flipped obfuscated image
    is not the obfuscation of the flipped image); the obfuscator one epoch against it."""
    from ..train.common import resumable_states
    from ..train.obfuscator import DEFAULT_RECIPE, make_config, train_obfuscator
    from ..train.surrogate import make_surrogate_config, train_surrogate

    folder.mkdir(parents=True, exist_ok=True)
    sent = obfuscate_augmented(obfuscator, images, args.seed + round_, args.threads)
    counts = _query_step(args, folder, sent, n_classes)
    merged = folder / "merged.npz"
    if not merged.exists():
        parts = [load_queries(folder.parent / QUERIES), load_queries(folder / QUERIES)]
        buffer = io.BytesIO()
        np.savez(buffer, images=np.concatenate([p[0] for p in parts]),
                 probs=np.concatenate([p[1] for p in parts]))
        atomic_write(merged, buffer.getvalue())
    refined = folder / "surrogate"
    if not (refined / "model.pt").exists():
        config = make_surrogate_config(args.surrogate, merged, data=args.data, out=str(refined),
                                       epochs=args.refine_surrogate_epochs,
                                       lr=args.refine_surrogate_lr, crop_padding=0, flip=False,
                                       seed=args.seed, threads=args.threads, init=str(surrogate))
        train_surrogate(config, resume=bool(resumable_states(refined)), quiet=args.quiet)
    tuned = folder / "obfuscator"
    if not (tuned / "model.pt").exists():
        config = make_config(args.recipe or DEFAULT_RECIPE, classifier=str(refined / "model.pt"),
                             data=args.data, out=str(tuned), epochs=1, init=str(obfuscator),
                             lr=args.refine_lr, lr_deobfuscator=args.refine_lr,
                             lam_ramp_epochs=0.0, batch_size=args.batch_size,
                             train_subset=args.train_subset, seed=args.seed,
                             threads=args.threads)
        train_obfuscator(config, resume=bool(resumable_states(tuned)), quiet=args.quiet)
    return tuned / "model.pt", refined / "model.pt", counts["training_images_sent"]


def obfuscate_augmented(obfuscator: Path, images: np.ndarray, seed: int,
                        threads: int | None = None) -> np.ndarray:
    """Each image randomly cropped (zero padding 4) and flipped, as the training loader does
    (seeded), then obfuscated to 8 bits as a device would send it."""
    import torch

    from ..data.loader import random_crop, random_flip
    from ..edge.obfuscators import TorchObfuscator

    generator = torch.Generator().manual_seed(seed)
    run = TorchObfuscator(obfuscator, threads)
    out = []
    for start in range(0, len(images), 500):
        x = torch.from_numpy(images[start:start + 500]).permute(0, 3, 1, 2)
        x = random_flip(random_crop(x, 4, generator), generator)
        out.append(run(x.permute(0, 2, 3, 1).contiguous().numpy()))
    return np.concatenate(out)


def _measure_step(args: BlackboxSettings, out: Path, public, obfuscator: Path,
                  surrogate: Path) -> dict[str, Any]:
    from ..core.checkpoint import load_checkpoint

    test = public.test.subset(args.eval_images, args.seed)
    url, token, limits = args.classifier_url, args.token, _limits(args)
    trained = load_checkpoint(obfuscator)["metrics"]
    return {
        "schema": BLACKBOX_SCHEMA, "server": url, "data": recorded_path(args.data),
        "seed": args.seed, "measured_on": int(len(test)),
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
