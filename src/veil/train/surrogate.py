"""A surrogate of a classifier that can only be queried: a zoo classifier distilled from the
probabilities the real one returned for public images (`veil blackbox` asks the server; this
module only learns from the answers).

The queried images and answers are an .npz (`images` uint8 (N, H, W, 3), `probs` float32
(N, classes)); the surrogate minimises the cross-entropy to those soft targets, with the same
augmentation, optimiser and schedule as `veil train classifier`. Its test accuracy is measured
on the public test split's own labels.
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..core.runtime import progress, quiet_default
from ..core.text import printable
from ..data import Dataset, Split, load_dataset
from .classifier import ClassifierConfig, ClassifierTrainer, classifier_step, make_config
from .common import Process, fit, start_process


@dataclass
class SurrogateConfig(ClassifierConfig):
    queries: str = ""  # the .npz of queried images and the answered probabilities
    init: str | None = None  # fine-tune: start from this surrogate checkpoint's weights


def make_surrogate_config(model: str, queries: str | Path, init: str | Path | None = None,
                          **overrides: Any) -> SurrogateConfig:
    base = make_config(model, **overrides)
    return SurrogateConfig(**{**vars(base), "queries": str(queries), "label_smoothing": 0.0,
                              "init": None if init is None else str(init)})


TARGET_SLACK = 1e-3  # how far a row of targets may add up from 1 (float32 rounding, a server's)


def target_problem(targets: np.ndarray) -> str | None:
    """What makes rows of answer targets unfit to learn from, or None: the one rule for a
    target made from a live answer and for one read back from a journal or an .npz."""
    if targets.ndim != 2 or targets.shape[1] < 2 or targets.dtype.kind not in "fiu":
        return f"{targets.dtype} of shape {targets.shape}, not rows of class probabilities"
    if not np.isfinite(targets).all():
        return "a target that is not a finite number"
    if (targets < 0).any():
        return "a negative target"
    if not np.allclose(targets.sum(1, dtype=np.float64), 1, rtol=0, atol=TARGET_SLACK):
        return "a row of targets that does not add up to 1"
    return None


def read_npz(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz, read whole; a damaged or truncated file, a missing array
    or one that is not plain data is a ValueError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise KeyError(missing[0])
            return {k: z[k] for k in keys}
    except KeyError as e:
        raise ValueError(f"{path}: holds no {e.args[0]!r} array (damaged, or not written by "
                         "veil blackbox)") from None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot be read as an .npz of arrays ({printable(str(e))[:120]})"
                         ) from None


def load_queries(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The queried images, uint8 (N, H, W, 3), and their targets, float32 (N, classes), each
    checked (targets by `target_problem`); a problem is a ValueError naming the file."""
    arrays = read_npz(path, ("images", "probs"))
    images, probs = arrays["images"], arrays["probs"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 or not len(images):
        raise ValueError(f"{path}: images are {images.dtype} of shape {images.shape}, not "
                         "uint8 (N, H, W, 3)")
    problem = target_problem(probs) or (None if len(probs) == len(images) else
                                        f"{len(probs)} rows for {len(images)} images")
    if problem:
        raise ValueError(f"{path}: probs: {problem}")
    return images, probs.astype(np.float32)


def train_surrogate(config: SurrogateConfig, resume: bool = False, quiet: bool | None = None
                    ) -> dict[str, Any]:
    """Distil the surrogate; returns the last metrics row (OUT/model.pt: a veil classifier)."""
    quiet = quiet_default() if quiet is None else quiet
    process = start_process(config, resume)
    return fit(SurrogateTrainer(config, process), process, config, resume, quiet)


class SurrogateTrainer(ClassifierTrainer):
    """ClassifierTrainer on the queried images, each labelled by its index, whose loss is the
    cross-entropy to the answered probabilities of that index."""

    def __init__(self, config: SurrogateConfig, process: Process) -> None:
        images, probs = load_queries(config.queries)
        public = load_dataset(config.data, image_size=config.image_size)
        if probs.shape[1] != len(public.classes):
            raise ValueError(f"{config.queries}: answers over {probs.shape[1]} classes, but "
                             f"the public data has {len(public.classes)}")
        if images.shape[1:3] != public.test.images.shape[1:3]:
            raise ValueError(f"{config.queries}: images of {images.shape[2]}x{images.shape[1]}, "
                             f"but the public data's are {public.test.images.shape[2]}x"
                             f"{public.test.images.shape[1]}")
        test = public.test.subset(config.test_subset, config.seed)
        ds = Dataset(public.name, public.classes,
                     Split(images, np.arange(len(images), dtype=np.int64)), test,
                     public.source_sha256)
        super().__init__(config, process, ds)
        if config.init:
            from ..core.checkpoint import load_checkpoint

            self.model.load_state_dict(load_checkpoint(config.init)["model"])
        self.targets = torch.from_numpy(probs).to(process.device)

    def soft_cross_entropy(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return -(self.targets[index] * F.log_softmax(logits.float(), 1)).sum(1).mean()

    def train_one_epoch(self, epoch: int, quiet: bool) -> dict[str, Any]:
        """One pass over the queried images; 'agreement': top-1 equal to the answer's."""
        loader, config = self.train_loader, self.config
        loader.set_epoch(epoch)
        self.model.train()
        t0 = time.perf_counter()
        sums = torch.zeros(3, device=self.device)
        for x, index in progress(loader, len(loader), f"surrogate {epoch}/{config.epochs}",
                                 quiet):
            x, index = self.ddp.shard(x), self.ddp.shard(index)
            loss, logits = classifier_step(self.step_model, self.soft_cross_entropy,
                                           self.optimizer, x, index, config.precision)
            self.scheduler.step()
            agree = (logits.argmax(1) == self.targets[index].argmax(1)).sum()
            sums += torch.stack([loss * len(x), agree.float(), sums.new_tensor(float(len(x)))])
        elapsed = time.perf_counter() - t0
        loss_sum, agree, seen = self.ddp.all_sum(sums).tolist()
        return {"loss": loss_sum / seen, "agreement": agree / seen,
                "images_per_s": seen / elapsed, "seconds": elapsed}

    def format_row(self, row: dict[str, Any]) -> str:
        return (f"surrogate epoch {row['epoch']}: loss {row['loss']:.3f}  agreement "
                f"{row['agreement']:.2%}  test {row['test_acc']:.2%}")
