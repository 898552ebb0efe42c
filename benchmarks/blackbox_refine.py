"""Black box, refined on its own obfuscated images: does asking the server about what the
obfuscator actually sends close the gap to the white box?

The surrogate of `veil blackbox` was distilled from plain public images, but the obfuscator
sends images that lie far from them, where the surrogate and the real classifier agree less
(issue 23 §1 measured 74.58 % through the server against 80.56 % on the surrogate itself). One
refinement round, every image sent counted:

1. the public training split, plain (the surrogate's own queries, sent again: their answers
   were not kept) and obfuscated by the finished black-box obfuscator (each image randomly
   cropped and flipped first, as the obfuscator saw it in training), answered with every
   class's probability by the real server;
2. the surrogate fine-tuned on both (from its weights, low learning rate, no augmentation:
   a flipped obfuscated image is not the obfuscation of the flipped image);
3. the black-box obfuscator (and its co-trained deobfuscator) fine-tuned one epoch against
   the refined surrogate.

Controls at the same extra budget (one epoch, the same settings): the white-box default
fine-tuned against the real classifier, and the black-box obfuscator fine-tuned against the
unrefined surrogate. All are measured through one `veil serve` of the real classifier on the
same test images. Every step resumes from its files in --out.

    python benchmarks/blackbox_refine.py --classifier runs/default-classifier.pt \
        --blackbox results/cpu/blackbox/full/resume --whitebox runs/default-obfuscator.pt \
        --data ../shared/data/cifar10-jpeg75.zip --out runs/blackbox-refine
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from veil.core.checkpoint import load_checkpoint
from veil.core.files import atomic_write
from veil.core.runtime import environment
from veil.data import load_dataset
from veil.edge.client import VeilClient
from veil.pipeline.blackbox import QueryLog, obfuscate_augmented, query, server_accuracy
from veil.report.results import write_result
from veil.serve.app import ServerConfig, create_app
from veil.serve.inference import Predictor
from veil.serve.server import BackgroundServer
from veil.train.common import fit, resumable_states, start_process
from veil.train.obfuscator import ObfuscatorTrainer, make_config
from veil.train.surrogate import SurrogateTrainer, make_surrogate_config

ARMS = {  # name -> (start from, train against, what it isolates)
    "blackbox_refined": ("blackbox", "refined surrogate", "the refinement round"),
    "blackbox_same_surrogate": ("blackbox", "surrogate", "one more epoch alone (black box)"),
    "whitebox_extra_epoch": ("whitebox", "real classifier", "one more epoch alone (white box)"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classifier", required=True, help="the real classifier (served)")
    p.add_argument("--blackbox", required=True, type=Path,
                   help="a finished veil blackbox run: obfuscator/model.pt, surrogate/model.pt")
    p.add_argument("--whitebox", required=True, type=Path, help="the white-box obfuscator")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--surrogate-epochs", type=int, default=2)
    p.add_argument("--surrogate-lr", type=float, default=0.04)
    p.add_argument("--lr", type=float, default=5e-4, help="the obfuscators' fine-tuning peak lr")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--eval-images", type=int, help="test images measured (default: all)")
    p.add_argument("--train-subset", type=int,
                   help="training images queried and fine-tuned on (default: all; a smoke test)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    public = load_dataset(args.data)
    black_obf = args.blackbox / "obfuscator" / "model.pt"
    surrogate = args.blackbox / "surrogate" / "model.pt"
    app = create_app(Predictor.from_checkpoint(args.classifier), ServerConfig(max_images=64))
    seconds: dict[str, float] = {}
    with BackgroundServer(app) as url:
        t0 = time.perf_counter()
        plain = public.train.subset(args.train_subset, args.seed).images
        obfuscated = obfuscate_augmented(black_obf, plain, args.seed, args.threads)
        sent = {"plain": answers(url, plain, public.classes, args.out / "plain"),
                "obfuscated": answers(url, obfuscated, public.classes, args.out / "obfuscated")}
        seconds["queries"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        refined = refine_surrogate(args, surrogate, [args.out / "plain.npz",
                                                     args.out / "obfuscated.npz"])
        seconds["surrogate"] = time.perf_counter() - t0
        starts = {"blackbox": black_obf, "whitebox": args.whitebox}
        targets = {"refined surrogate": refined, "surrogate": surrogate,
                   "real classifier": Path(args.classifier)}
        test = public.test.subset(args.eval_images, args.seed)
        rows: dict[str, Any] = {}
        for name, start in {"blackbox_before": black_obf, "whitebox_before": args.whitebox}.items():
            rows[name] = {"server_acc": server_accuracy(url, None, test.images, test.labels,
                                                        start, args.threads, True)}
        for name in args.arms:
            start, target, isolates = ARMS[name]
            t0 = time.perf_counter()
            model, trained = fine_tune(args, starts[start], targets[target], args.out / name)
            seconds[name] = time.perf_counter() - t0
            rows[name] = {"start": start, "against": target, "isolates": isolates,
                          "server_acc": server_accuracy(url, None, test.images, test.labels,
                                                        model, args.threads, True),
                          "target_obfuscated_acc": trained["obfuscated_acc"],
                          "deobfuscator_ssim": trained["deobfuscator_ssim"],
                          "train_seconds": trained.get("wall_s")}
    result = {"schema": "veil.blackbox_refine/1",
              "settings": {k: str(v) for k, v in vars(args).items()},
              "environment": environment(), "measured_on": len(test),
              "images_sent": {**sent, "measuring": len(test) * (2 + len(args.arms))},
              "surrogate_test_acc": {"before": load_checkpoint(surrogate)["metrics"]["test_acc"],
                                     "refined": load_checkpoint(refined)["metrics"]["test_acc"]},
              "arms": rows, "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    print(write_result(result, args.out)[1].read_text())
    return 0


def answers(url: str, images: np.ndarray, classes: list[str], stem: Path) -> int:
    """STEM.npz: the images and the server's probabilities for them (resumed from
    STEM.journal after a kill); returns the images sent."""
    path = stem.with_suffix(".npz")
    if not path.exists():
        log = QueryLog.open(stem.with_suffix(".journal"))
        with VeilClient(url, lambda batch: batch, top_k=len(classes)) as client:
            client.check_server()
            query(client, images, classes, "probs", log)
        if any(log.targets[i] is None for i in range(len(images))):
            raise RuntimeError("the server gave an invalid answer")
        buffer = io.BytesIO()
        np.savez(buffer, images=images,
                 probs=np.array([log.targets[i] for i in range(len(images))], np.float32),
                 sent=np.int64(log.sent))
        atomic_write(path, buffer.getvalue())
        stem.with_suffix(".journal").unlink()
    with np.load(path) as z:
        return int(z["sent"])


def refine_surrogate(args: argparse.Namespace, surrogate: Path, queries: list[Path]) -> Path:
    folder = args.out / "surrogate"
    if not (folder / "model.pt").exists():
        merged = args.out / "merged.npz"
        if not merged.exists():
            parts = [np.load(q) for q in queries]
            buffer = io.BytesIO()
            np.savez(buffer, images=np.concatenate([z["images"] for z in parts]),
                     probs=np.concatenate([z["probs"] for z in parts]))
            atomic_write(merged, buffer.getvalue())
        config = make_surrogate_config("fastnet", merged, data=args.data, out=str(folder),
                                       epochs=args.surrogate_epochs, lr=args.surrogate_lr,
                                       crop_padding=0, flip=False, seed=args.seed,
                                       test_subset=args.eval_images,
                                       threads=args.threads)
        resume = bool(resumable_states(folder))
        process = start_process(config, resume)
        trainer = SurrogateTrainer(config, process)
        trainer.model.load_state_dict(load_checkpoint(surrogate)["model"])
        fit(trainer, process, config, resume, quiet=True)
    return folder / "model.pt"


def fine_tune(args: argparse.Namespace, start: Path, classifier: Path, folder: Path
              ) -> tuple[Path, dict[str, Any]]:
    """One adversarial epoch from START's obfuscator and deobfuscator, λ at full weight from
    the first step, a short one-cycle schedule peaking at --lr."""
    if not (folder / "model.pt").exists():
        config = make_config("staged", classifier=str(classifier), data=args.data,
                             out=str(folder), epochs=1, warm_start={}, lr=args.lr,
                             lr_deobfuscator=args.lr, lam_ramp_epochs=0.0, seed=args.seed,
                             train_subset=args.train_subset, test_subset=args.eval_images,
                             threads=args.threads)
        resume = bool(resumable_states(folder))
        process = start_process(config, resume)
        trainer = ObfuscatorTrainer(config, process)
        pair = load_checkpoint(start)
        trainer.obfuscator.load_state_dict(pair["obfuscator"])
        trainer.deobfuscator.load_state_dict(pair["deobfuscator"])
        fit(trainer, process, config, resume, quiet=True)
    return folder / "model.pt", load_checkpoint(folder / "model.pt")["metrics"]


if __name__ == "__main__":
    raise SystemExit(main())
