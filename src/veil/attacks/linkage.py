"""Linkage: which photo was this? Attacks that link a sent image to its original in a gallery.

Redrawing the picture is one threat; an attacker who holds candidate photos (a social network's,
CCTV stills, a phone's backup) and intercepts one sent image only has to *find* its original.
Each query is the sent image of one gallery photo; an attack scores every gallery photo and is
measured by where the true one ranks: top-1 and top-5 among the whole gallery, the median rank,
and top-1 within the photo's own class (which the cloud learns by design, so the class alone
must not link). Ties are broken at random in expectation, so a defense that sends the same
image for every photo scores exactly chance.

- `operator`: no training. The cloud operator runs the frozen classifier anyway: cosine
  similarity of its penultimate features, and of its logits, of the received image and of each
  gallery photo; plus the raw pixels. The best of these is the attack.
- `reobfuscate`: no training, with the obfuscator's weights (every shipped zoo entry's are
  public). The attacker runs the obfuscator on every gallery photo itself and takes the photo
  whose 8-bit output is nearest (Euclidean) to the received image: against a deterministic
  obfuscator that is an exact lookup. Noise added on the device does not hide it: the noise-free
  output is the noise's expectation, and the nearest one is the most likely photo under
  Gaussian noise. Scored against the exact photos and against their JPEG-75 copies (an attacker
  whose copy of a photo differs from the device's); the better is the attack. Whose weights the
  attacker runs is a parameter: a sibling obfuscator's, or a private one's parent.
- `fit`: against an obfuscator that draws noise inside itself per request: the weights' holder
  fits, for each received image and each of its shortlisted candidates (the nearest by the
  noise-free expectation), the bottleneck noise that best reproduces it, and ranks the
  candidates by that fit.
- `matcher`: an eavesdropper who has the obfuscator's weights (it ships to every device) makes
  (sent, original) pairs from public photos and trains two encoders with a symmetric InfoNCE
  loss, half of the batches drawn from two classes only (hard negatives), crop + flip on the
  photo before it is sent, until its validation top-1 is flat (or its budget is spent).
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..batches import channels_last
from ..core.eightbit import quantize_8bit
from ..core.runtime import progress
from ..data import Split, to_tensor_images
from ..data.loader import random_crop, random_flip
from ..models import FrozenClassifier
from ..models.complexity import count_params
from ..models.matcher import Matcher
from .defenses import Defense


# --- the ranking metrics ---------------------------------------------------------------------
def expected_ranks(similarity: torch.Tensor, mask: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """For query i (row) and its true gallery item i (column): the number of candidates that
    score strictly higher, and the number of *other* candidates tied with it, among the gallery
    items where `mask[i]` is True (all when None). The true item always counts as a candidate."""
    if similarity.dim() != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"expected a square (queries x gallery) similarity matrix, got "
                         f"{tuple(similarity.shape)}")
    true = similarity.diagonal().unsqueeze(1)
    candidates = torch.ones_like(similarity, dtype=torch.bool) if mask is None else mask.clone()
    candidates.fill_diagonal_(True)
    higher = ((similarity > true) & candidates).sum(1)
    tied = ((similarity == true) & candidates).sum(1) - 1
    return higher, tied


def hit_probability(higher: torch.Tensor, tied: torch.Tensor, k: int) -> torch.Tensor:
    """Chance that the true item is within the first k, ties broken uniformly at random."""
    slots = (k - higher).clamp(min=0).double()
    return torch.minimum(slots / (tied + 1).double(), torch.ones_like(slots))


def ranking_metrics(similarity: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Top-1, top-5 and median rank of each query's true item among the whole gallery, and top-1
    within its class; each with its chance level (what a defense that links nothing scores)."""
    similarity = similarity.float()
    n = similarity.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"expected {n} labels, got shape {tuple(labels.shape)}")
    higher, tied = expected_ranks(similarity)
    ranks = 1 + higher.double() + tied.double() / 2
    same_class = labels.unsqueeze(0) == labels.unsqueeze(1)
    c_higher, c_tied = expected_ranks(similarity, same_class)
    class_sizes = same_class.sum(1).double()
    return {
        "gallery": n,
        "top1": hit_probability(higher, tied, 1).mean().item(),
        "top5": hit_probability(higher, tied, 5).mean().item(),
        "median_rank": ranks.median().item() if n % 2 else ranks.sort().values[
            n // 2 - 1:n // 2 + 1].mean().item(),
        "class_top1": hit_probability(c_higher, c_tied, 1).mean().item(),
        "chance": {"top1": 1 / n, "top5": min(5, n) / n, "median_rank": (n + 1) / 2,
                   "class_top1": (1 / class_sizes).mean().item()},
    }


def cosine_similarity(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    q = F.normalize(queries.flatten(1).double(), dim=1)
    g = F.normalize(gallery.flatten(1).double(), dim=1)
    return (q @ g.T).float()


def gallery_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` test photos, as many of each class as can be (seeded), in index order."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    picked: list[int] = []
    for k in range(max(len(v) for v in per_class.values())):
        for c in classes:
            if len(picked) < size and k < len(per_class[c]):
                picked.append(int(per_class[c][k]))
    return np.sort(np.array(picked, dtype=np.int64))


# --- the operator's attack: no training --------------------------------------------------------
@torch.no_grad()
def operator_linkage(classifier: nn.Module | None, sent: torch.Tensor, originals: torch.Tensor,
                     labels: torch.Tensor, batch_size: int = 500) -> dict[str, Any]:
    """Rank the gallery by cosine similarity in pixel space and, with a classifier, in its
    penultimate features and logits; the variant with the highest top-1 is the attack."""
    views: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
        "pixels": (sent - sent.mean(0), originals - originals.mean(0))}
    if classifier is not None:
        frozen = FrozenClassifier(classifier, fold=False)
        for name, pick in (("features", 1), ("logits", 0)):
            if name == "features" and frozen.head is None:
                continue
            views[name] = tuple(_embed_with(frozen, images, pick, batch_size)
                                for images in (sent, originals))
    variants = {name: ranking_metrics(cosine_similarity(q, g), labels)
                for name, (q, g) in views.items()}
    best = max(variants, key=lambda k: variants[k]["top1"])
    return {**variants[best], "variant": best,
            "variants": {k: {m: v[m] for m in ("top1", "top5", "median_rank", "class_top1")}
                         for k, v in variants.items()}}


def _embed_with(frozen: FrozenClassifier, images: torch.Tensor, pick: int, batch_size: int
                ) -> torch.Tensor:
    return torch.cat([frozen.forward_with_features(channels_last(images[i:i + batch_size]))[pick]
                      .float().flatten(1) for i in range(0, len(images), batch_size)])


# --- the weights' holder's attack: re-obfuscation ------------------------------------------------
def jpeg_copies(images: torch.Tensor, quality: int = 75) -> torch.Tensor:
    """Each (3, H, W) image in [0, 1] as it reads back after JPEG at `quality` (Pillow, 4:2:0):
    the attacker's copy of a photo, not the device's bytes."""
    pixels = images.mul(255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
    copies = []
    for p in pixels:
        buffer = io.BytesIO()
        Image.fromarray(p).save(buffer, "JPEG", quality=quality)
        copies.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))
    return to_tensor_images(np.stack(copies), images.device).float().div_(255)


def randomised(obfuscator: nn.Module) -> bool:
    """Whether the obfuscator draws noise inside itself on every call (models.obfuscator)."""
    return bool(getattr(obfuscator, "noise", 0))


@torch.no_grad()
def expected_sends(obfuscator: nn.Module, gallery: torch.Tensor, draws: int = 0,
                   batch_size: int = 500) -> torch.Tensor:
    """What the attacker expects `obfuscator` to send for each photo: its 8-bit output, for a
    randomised obfuscator with its noise set to zero (draws = 0) or averaged over `draws`
    fresh draws."""
    def one(x: torch.Tensor) -> torch.Tensor:
        x = channels_last(x)
        if not randomised(obfuscator):
            return quantize_8bit(obfuscator(x))
        if draws == 0:
            z = obfuscator.encode(x)
            return quantize_8bit(obfuscator.decode(z, torch.zeros_like(z)))
        return torch.stack([quantize_8bit(obfuscator(x)) for _ in range(draws)]).mean(0)

    obfuscator.eval()
    return torch.cat([one(gallery[i:i + batch_size]) for i in range(0, len(gallery), batch_size)])


def _distances(sent: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    # exact distances (no matrix-product shortcut), so that equal images tie exactly
    return torch.cdist(sent.flatten(1).double(), expected.flatten(1).double(),
                       compute_mode="donot_use_mm_for_euclid_dist")


def best_variant(variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The variant with the highest top-1, which one, and every variant's figures."""
    best = max(variants, key=lambda k: variants[k]["top1"])
    return {**variants[best], "variant": best,
            "variants": {k: {m: v[m] for m in ("top1", "top5", "median_rank", "class_top1")}
                         for k, v in variants.items()}}


@torch.no_grad()
def reobfuscation_linkage(obfuscators: nn.Module | Sequence[nn.Module], sent: torch.Tensor,
                          originals: torch.Tensor, labels: torch.Tensor, draws: int = 16
                          ) -> dict[str, Any]:
    """Rank the gallery by the Euclidean distance between the received image and what an
    obfuscator the attacker holds is expected to send for each photo; with the exact photos
    and with their JPEG-75 copies, and for a randomised obfuscator with its noise at zero and
    averaged over `draws` draws. Holding several (siblings), each alone and the nearest over
    all of them per photo. The variant with the highest top-1 is the attack."""
    held = [obfuscators] if isinstance(obfuscators, nn.Module) else list(obfuscators)
    variants = {}
    for name, gallery in (("exact", originals), ("jpeg75", jpeg_copies(originals))):
        nearest = None
        for i, obfuscator in enumerate(held):
            member = f"held{i + 1}-" if len(held) > 1 else ""
            ways = ({"": 0} if not randomised(obfuscator)
                    else {"-noise-free": 0, f"-mean{draws}": draws})
            for way, n in ways.items():
                distance = _distances(sent, expected_sends(obfuscator, gallery, n))
                variants[member + name + way] = ranking_metrics(-distance, labels)
                nearest = distance if nearest is None else torch.minimum(nearest, distance)
        if len(held) > 1:
            variants[f"nearest-{name}"] = ranking_metrics(-nearest, labels)
    return best_variant(variants)


# --- fitting: the randomness that best explains what was sent ----------------------------------
@dataclass
class FitBudget:
    shortlist: int = 10  # candidates per query, the nearest by the noise-free expectation
    steps: int = 40  # Adam steps on each (query, candidate)'s noise
    lr: float = 0.1
    pairs_per_batch: int = 1000


def fitting_linkage(obfuscator: nn.Module, sent: torch.Tensor, originals: torch.Tensor,
                    labels: torch.Tensor, budget: FitBudget | None = None) -> dict[str, Any]:
    """For a randomised obfuscator: for each received image and each of its shortlisted
    candidate photos, the bottleneck noise that best reproduces the image (maximum a posteriori:
    squared pixel error over the 8-bit rule's rounding variance plus the noise's own squared
    norm), then the candidates ranked by that fit; the others keep the expectation's order
    behind them. A deterministic obfuscator has no randomness to fit: re-obfuscation."""
    budget = budget or FitBudget()
    for p in obfuscator.parameters():  # the attacker's copy: only the noise is fitted
        p.requires_grad_(False)
    if not randomised(obfuscator):
        return {**reobfuscation_linkage(obfuscator, sent, originals, labels), "fitted": False}
    obfuscator.eval()
    distance = _distances(sent, expected_sends(obfuscator, originals))
    k = min(budget.shortlist, len(originals))
    shortlist = distance.topk(k, dim=1, largest=False).indices  # (queries, k)
    with torch.no_grad():
        codes = torch.cat([obfuscator.encode(channels_last(originals[i:i + 500]))
                           for i in range(0, len(originals), 500)])
    queries = torch.arange(len(sent)).repeat_interleave(k)
    candidates = shortlist.flatten()
    fit = torch.cat([_fit(obfuscator, codes[candidates[i:i + budget.pairs_per_batch]],
                          sent[queries[i:i + budget.pairs_per_batch]], budget)
                     for i in range(0, len(queries), budget.pairs_per_batch)])
    # every non-shortlisted candidate behind every shortlisted one, in the expectation's order
    score = -(distance + fit.max() + 1)
    score[queries, candidates] = -fit
    return {**ranking_metrics(score, labels), "fitted": True,
            "budget": {k: v for k, v in vars(budget).items()}}


def _fit(obfuscator: nn.Module, codes: torch.Tensor, sent: torch.Tensor, budget: FitBudget
         ) -> torch.Tensor:
    """The lowest objective found for each (code, sent image) pair: Adam on the noise."""
    rounding = (1 / 255) ** 2 / 12  # the variance of the 8-bit rule's rounding error
    noise = torch.zeros_like(codes, requires_grad=True)
    optimizer = torch.optim.Adam([noise], lr=budget.lr)
    best = torch.full((len(codes),), float("inf"), dtype=torch.float64)
    for _ in range(budget.steps + 1):
        out = obfuscator.decode(codes, noise)
        objective = ((out - sent) ** 2).flatten(1).sum(1) / (2 * rounding) \
            + 0.5 * noise.flatten(1).pow(2).sum(1)
        best = torch.minimum(best, objective.detach().double())
        optimizer.zero_grad(set_to_none=True)
        objective.sum().backward()
        optimizer.step()
    return best


# --- the eavesdropper's attack: a contrastive matcher --------------------------------------------
@dataclass
class MatcherBudget:
    width: int = 32
    batch_size: int = 128
    lr: float = 1e-3
    max_images: int | None = None  # training pairs (None: until flat or out of time)
    time_s: float | None = None
    eval_every: int = 5000
    val_images: int = 1000
    flat_gain: float = 0.005  # validation top-1 gained over the last quarter of the pairs
    hard_fraction: float = 0.5  # share of batches drawn from two classes only
    crop_padding: int = 4


class HardBatches:
    """Batches of photo indices: random ones, and (a `hard_fraction` of them) ones drawn from two
    classes only, whose negatives look alike. Seeded; crop + flip applied on the device."""

    def __init__(self, split: Split, batch_size: int, hard_fraction: float, seed: int) -> None:
        self.split, self.batch_size, self.hard_fraction = split, batch_size, hard_fraction
        self.rng = np.random.default_rng(seed)
        self.by_class = [np.flatnonzero(split.labels == c) for c in np.unique(split.labels)]
        self.generator = torch.Generator().manual_seed(seed)

    def next(self, device: torch.device, crop_padding: int) -> torch.Tensor:
        n = min(self.batch_size, len(self.split))
        if len(self.by_class) > 1 and self.rng.random() < self.hard_fraction:
            two = self.rng.choice(len(self.by_class), 2, replace=False)
            pool = np.concatenate([self.by_class[c] for c in two])
            idx = self.rng.choice(pool, min(n, len(pool)), replace=False)
        else:
            idx = self.rng.choice(len(self.split), n, replace=False)
        x = to_tensor_images(self.split.images[np.sort(idx)], "cpu").float().div_(255)
        if crop_padding:
            x = random_crop(x, crop_padding, self.generator)
        return random_flip(x, self.generator).to(device)


def train_matcher(defense: Defense, train: Split, val: Split, budget: MatcherBudget,
                  device: torch.device, seed: int = 0, quiet: bool = True
                  ) -> tuple[Matcher, dict[str, Any]]:
    """A matcher trained on (sent, photo) pairs of the `train` photos until its best top-1 on
    `val` (its own gallery of held-out photos) is flat, or its budget is spent; the weights of
    its best validation point are the ones returned (the curve is noisy: an attacker keeps its
    best), with the curve."""
    val_x = to_tensor_images(val.images, device).float().div_(255)
    val_sent, val_labels = defense.transmit_all(val_x), torch.as_tensor(val.labels)
    matcher = Matcher(budget.width, seed).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(matcher.parameters(), lr=budget.lr, weight_decay=5e-4)
    batches = HardBatches(train, budget.batch_size, budget.hard_fraction, seed)
    points: list[dict[str, float]] = []
    seen, train_s, stop = 0, 0.0, None
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # top-1, pairs, weights
    for _ in progress(itertools.count(), None, f"{defense.name}: matcher", quiet):
        t0 = time.perf_counter()
        x = batches.next(device, budget.crop_padding)
        matcher.train()
        loss = matcher.loss(channels_last(defense.transmit(x)), channels_last(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        train_s += time.perf_counter() - t0
        seen += len(x)
        spent = ((budget.max_images is not None and seen >= budget.max_images)
                 or (budget.time_s is not None and train_s >= budget.time_s))
        if spent or seen // budget.eval_every > (seen - len(x)) // budget.eval_every:
            top1 = ranking_metrics(matcher.similarity(val_sent, val_x), val_labels)["top1"]
            points.append({"images": seen, "train_s": round(train_s, 1), "top1": top1,
                           "loss": loss.item()})
            if best is None or top1 > best[0]:
                best = (top1, seen, {k: v.detach().clone()
                                     for k, v in matcher.state_dict().items()})
            stop = flat_or_spent(points, seen, budget.flat_gain) or ("budget" if spent else None)
            if stop is not None:
                break
    assert best is not None
    matcher.load_state_dict(best[2])
    curve = {"stopped": stop, "images": seen, "train_s": round(train_s, 1), "points": points,
             "best": {"images": best[1], "top1": best[0]}, "params": count_params(matcher)}
    return matcher.eval(), curve


def flat_or_spent(points: list[dict[str, float]], seen: int, flat_gain: float) -> str | None:
    """'converged' when the best top-1 so far beats the best of the first three quarters of
    the pairs seen by less than `flat_gain` (with at least four points), else None."""
    if len(points) >= 4:
        earlier = max(p["top1"] for p in points if p["images"] <= 0.75 * seen)
        if max(p["top1"] for p in points) - earlier < flat_gain:
            return "converged"
    return None


def matcher_linkage(defense: Defense, train: Split, budget: MatcherBudget, sent: torch.Tensor,
                    originals: torch.Tensor, labels: torch.Tensor, device: torch.device,
                    seed: int = 0, quiet: bool = True) -> dict[str, Any]:
    """Train a matcher on the attacker's own photos (the training split: `budget.val_images`
    of them held out for its curve), then link the test gallery."""
    n_val = min(budget.val_images, len(train) // 5)
    order = np.random.default_rng(seed).permutation(len(train))
    val = Split(train.images[np.sort(order[:n_val])], train.labels[np.sort(order[:n_val])])
    fit = Split(train.images[np.sort(order[n_val:])], train.labels[np.sort(order[n_val:])])
    matcher, curve = train_matcher(defense, fit, val, budget, device, seed, quiet)
    scored = ranking_metrics(matcher.similarity(sent, originals), labels)
    return {**scored, "budget": {**vars(budget), "train_images": len(fit), "val_images": n_val},
            "curve": curve}
