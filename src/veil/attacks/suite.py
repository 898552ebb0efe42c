"""Score defenses (trained obfuscators, baselines) against every attack on the same footing.

For each defense: the frozen classifier's accuracy on the sent 8-bit images, what an eavesdropper
sees (the sent image vs the original), each reconstruction attack's quality (PSNR, SSIM: mean,
std, percentiles over the test split), and each linkage attack's ranks (top-1, top-5, median
rank among a gallery of test photos, top-1 within the class; see `linkage`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..batches import accuracy_on, test_images
from ..core.runtime import environment
from ..data import Dataset, Split
from ..metrics import image_scores
from ..models.complexity import count_params
from ..report.figures import encode_strip, pareto_front
from ..report.kinds.attacks import SCHEMA
from ..run_inputs import LoadedClassifier
from .budget import AttackBudget
from .decoders import make_decoder
from .defenses import Defense, held_defense
from .fresh_decoder import reconstruct, train_fresh_decoder, train_until_flat
from .inversion import invert
from .linkage import (
    FitBudget,
    MatcherBudget,
    best_variant,
    fitting_linkage,
    gallery_indices,
    matcher_linkage,
    operator_linkage,
    reobfuscation_linkage,
)
from .partial import PartialResult

Log = Callable[[str], None]
ATTACKS: dict[str, str] = {
    "cotrained": "the obfuscator's own co-trained deobfuscator (trained obfuscators only)",
    "decoder": "fresh decoder: the paper's deobfuscator architecture trained from scratch on "
               "black-box queries of the training images",
    "unet": "fresh U-Net decoder (more capacity) trained from scratch on black-box queries",
    "inversion": "white-box inversion: Adam on a sigmoid-parametrised image so that the "
                 "defense maps it to the observed 8-bit image, TV prior, best of several starts",
    "link_operator": "linkage, no training: the cloud operator ranks the gallery by cosine "
                     "similarity of the frozen classifier's penultimate features, its logits or "
                     "the pixels (the best of the three)",
    "link_reobfuscate": "linkage, no training, with the obfuscator's weights: re-obfuscate every "
                        "gallery photo (noise-free) and take the nearest 8-bit image, against "
                        "the exact photos and their JPEG-75 copies (the better of the two)",
    "link_fit": "linkage against randomness inside the obfuscator, with its weights: for each "
                "received image and its 10 nearest candidates (by the noise-free expectation), the "
                "bottleneck noise that best reproduces it; the best fit wins (a deterministic "
                "obfuscator: re-obfuscation)",
    "link_matcher": "linkage, learned: two encoders trained contrastively (InfoNCE, hard "
                    "batches) on (sent, photo) pairs the attacker makes with the defense's "
                    "weights, until flat",
}
LINKAGE = ("link_operator", "link_reobfuscate", "link_fit", "link_matcher")
DEFAULT_ATTACKS = ("cotrained", "decoder", "unet", "inversion", *LINKAGE)


def check_attacks(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack {unknown[0]!r}; valid: {', '.join(ATTACKS)}")
    if not names:
        raise ValueError("no attacks selected")
    return list(dict.fromkeys(names))


@dataclass
class AttackSetup:
    ds: Dataset
    data_info: dict[str, Any]
    classifier: LoadedClassifier | None
    attacks: list[str]
    budget: AttackBudget
    device: torch.device
    seed: int = 0
    quiet: bool = True
    # the obfuscators the attacker holds (a sibling's, a derived one's parent, a population):
    # re-obfuscation and fitting run them, the matcher trains on their pairs; empty: each
    # defense's own weights
    attacker_obfuscators: list[nn.Module] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.attacks = check_attacks(self.attacks)
        self.x = test_images(self.ds, self.device)
        self.y = torch.as_tensor(self.ds.test.labels, device=self.device)
        n = len(self.ds.test)
        keep = n if self.budget.inversion_images is None else min(n, self.budget.inversion_images)
        order = np.random.default_rng(self.seed).permutation(n)[:keep]
        self.inversion_idx = np.sort(order)
        labels = self.ds.test.labels[self.inversion_idx]
        self.example_idx = [int(self.inversion_idx[np.flatnonzero(labels == c)[0]])
                            for c in range(len(self.ds.classes)) if (labels == c).any()]
        self.train_images = min(len(self.ds.train), self.budget.train_size or len(self.ds.train))
        self.gallery_idx = gallery_indices(self.ds.test.labels, self.budget.gallery_size,
                                           self.seed)

    def recorded_budget(self) -> dict[str, Any]:
        """The budget as the result records it: with the images it came to on this data."""
        return {**self.budget.as_dict(), "train_images": self.train_images,
                "inversion_images": len(self.inversion_idx),
                "gallery_size": len(self.gallery_idx)}

    def matcher_budget(self) -> MatcherBudget:
        b = self.budget
        return MatcherBudget(
            width=b.matcher_width,
            max_images=b.matcher_max_images if b.until_flat else b.epochs * self.train_images,
            time_s=b.matcher_time_s if b.until_flat else None,
            eval_every=b.matcher_eval_every, val_images=len(self.gallery_idx))

    def reference(self) -> dict[str, Any]:
        """The best constant guess (the mean training image): what knowing nothing gives."""
        mean = torch.as_tensor(self.ds.train.images.mean(0), dtype=torch.float32) / 255
        guess = mean.permute(2, 0, 1).to(self.device).expand_as(self.x)
        return {"mean_image": image_scores(self.x, guess)}


def attack_defense(defense: Defense, setup: AttackSetup, log: Log = print) -> dict[str, Any]:
    """One defense against every selected attack; a JSON-ready dict."""
    defense.to(setup.device)
    x, ex = setup.x, setup.example_idx
    sent = defense.transmit_all(x)
    accuracy = (accuracy_on(setup.classifier.model, sent, setup.y) if setup.classifier else None)
    row: dict[str, Any] = {**defense.summary(), "accuracy": accuracy,
                           "eavesdropper": image_scores(x, sent), "attacks": {}}
    examples = {"original": encode_strip(x[ex]), "sent": encode_strip(sent[ex])}
    for name in setup.attacks:
        if name in LINKAGE:
            continue
        if name == "cotrained" and defense.deobfuscator is None:
            continue
        t0 = time.perf_counter()
        scored, shown, extra = _run_attack(name, defense, sent, setup)
        row["attacks"][name] = {**scored, **extra, "wall_s": round(time.perf_counter() - t0, 2)}
        examples[name] = encode_strip(shown)
        log(f"  {defense.name} / {name}: PSNR {scored['psnr']['mean']:.2f} dB, "
            f"SSIM {scored['ssim']['mean']:.3f} ({row['attacks'][name]['wall_s']:.0f}s)")
    row["strongest"] = _strongest(row)
    row["linkage"] = {name: _run_linkage(name, defense, sent, setup, log)
                      for name in setup.attacks if name in LINKAGE}
    row["strongest_linkage"] = _strongest_linkage(row["linkage"])
    row["examples"] = {"indices": ex, "labels": [setup.ds.classes[int(setup.ds.test.labels[i])]
                                                  for i in ex], "rows": examples}
    return row


def _run_attack(name: str, defense: Defense, sent: torch.Tensor, setup: AttackSetup
                ) -> tuple[dict[str, Any], torch.Tensor, dict[str, Any]]:
    x, ex = setup.x, setup.example_idx
    b = setup.budget
    if name == "inversion":
        idx = torch.as_tensor(setup.inversion_idx, device=x.device)
        rebuilt = invert(defense.transform, sent[idx], b, setup.seed, quiet=setup.quiet,
                         desc=f"{defense.name}: inversion")
        position = {int(i): k for k, i in enumerate(setup.inversion_idx)}
        shown = rebuilt[[position[i] for i in ex]]
        budget = {"images": len(idx), "steps": b.inversion_steps,
                  "restarts": b.inversion_restarts, "lr": b.inversion_lr,
                  "tv_weight": b.tv_weight}
        return image_scores(x[idx], rebuilt), shown, {"budget": budget}
    extra: dict[str, Any] = {}
    if name == "cotrained":
        decoder = defense.deobfuscator
        extra["budget"] = {k: defense.info.get(k) for k in ("epochs", "train_subset")}
    elif b.until_flat:
        arch = "deobfuscator" if name == "decoder" else "unet"
        return _fresh_until_flat(arch, defense, sent, setup)
    else:
        arch = "deobfuscator" if name == "decoder" else "unet"
        decoder, losses = train_fresh_decoder(defense, arch, setup.ds.train, b, setup.device,
                                              setup.seed, setup.quiet)
        extra["budget"] = {"architecture": arch, "epochs": b.epochs,
                           "train_images": setup.train_images, "batch_size": b.batch_size,
                           "lr": b.lr, "params": count_params(decoder)}
        extra["train_loss"] = [round(v, 6) for v in losses]
    rebuilt = reconstruct(decoder, sent)
    return image_scores(x, rebuilt), rebuilt[ex], extra


def _fresh_until_flat(arch: str, defense: Defense, sent: torch.Tensor, setup: AttackSetup
                      ) -> tuple[dict[str, Any], torch.Tensor, dict[str, Any]]:
    """A fresh decoder per loss, each until its curve (on training images held out of its
    training) is flat; the stronger on the test split is the attack, every one is reported."""
    b, x = setup.budget, setup.x
    pool = setup.ds.train.subset(setup.train_images, setup.seed)
    n_val = min(b.val_images, len(pool) // 5)
    val = Split(pool.images[:n_val], pool.labels[:n_val])
    train = Split(pool.images[n_val:], pool.labels[n_val:])
    variants = []
    for weight in b.ssim_weights:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(setup.seed)
            decoder = make_decoder(arch, b.unet_width)
        decoder, curve = train_until_flat(
            defense, decoder, train, val, setup.device, time_budget_s=b.time_s,
            max_images=b.max_images, eval_every=b.eval_every, batch_size=b.batch_size, lr=b.lr,
            ssim_weight=weight, flat_gain=b.flat_gain, seed=setup.seed, quiet=setup.quiet)
        rebuilt = reconstruct(decoder, sent)
        variants.append((image_scores(x, rebuilt), rebuilt, {
            "decoder": arch if arch != "unet" else f"unet{b.unet_width}",
            "loss": "mse" if weight == 0 else f"mse + {weight:g} (1 - ssim)", **curve}))
    scored, rebuilt, _ = max(variants, key=lambda v: v[0]["ssim"]["mean"])
    extra = {"budget": {"architecture": arch, "until_flat": True, "train_images": len(train),
                        "val_images": n_val, "batch_size": b.batch_size, "lr": b.lr,
                        "params": count_params(decoder)},
             "variants": [{"loss": c["loss"], "stopped": c["stopped"], "images": c["images"],
                           "ssim": s["ssim"]["mean"], "psnr": s["psnr"]["mean"]}
                          for s, _, c in variants],
             "curves": [c for _, _, c in variants]}
    return scored, rebuilt[setup.example_idx], extra


def _run_linkage(name: str, defense: Defense, sent: torch.Tensor, setup: AttackSetup,
                 log: Log) -> dict[str, Any]:
    t0 = time.perf_counter()
    idx = torch.as_tensor(setup.gallery_idx, device=setup.x.device)
    queries, photos, labels = sent[idx], setup.x[idx], setup.y[idx].cpu()
    if name == "link_operator":
        model = setup.classifier.model if setup.classifier else None
        scored = operator_linkage(model, queries, photos, labels)
    elif name in ("link_reobfuscate", "link_fit"):  # the attacker runs obfuscators it holds
        held = setup.attacker_obfuscators or [defense.transform]
        if name == "link_reobfuscate":
            scored = reobfuscation_linkage(held, queries, photos, labels)
        else:
            budget = FitBudget(setup.budget.fit_shortlist, setup.budget.fit_steps)
            fits = {f"held{i + 1}": fitting_linkage(h, queries, photos, labels, budget)
                    for i, h in enumerate(held)}
            scored = fits["held1"] if len(fits) == 1 else best_variant(fits)
        scored["weights"] = _whose(setup)
    else:  # a matcher trained on pairs the attacker can make: its own weights' where it has any
        held = setup.attacker_obfuscators
        pairs = held_defense(held, setup.seed) if held else defense
        train = setup.ds.train.subset(setup.train_images, setup.seed)
        scored = matcher_linkage(pairs, train, setup.matcher_budget(), queries, photos, labels,
                                 setup.device, setup.seed, setup.quiet)
        scored["weights"] = _whose(setup)
    scored["wall_s"] = round(time.perf_counter() - t0, 2)
    log(f"  {defense.name} / {name}: top-1 {100 * scored['top1']:.1f} % of {scored['gallery']} "
        f"(chance {100 * scored['chance']['top1']:.1f} %), within the class "
        f"{100 * scored['class_top1']:.1f} % ({scored['wall_s']:.0f}s)")
    return scored


def _whose(setup: AttackSetup) -> str:
    n = len(setup.attacker_obfuscators)
    return ("the defense's own" if n == 0 else "the attacker's" if n == 1
            else f"the attacker's {n} (a population)")


def _strongest_linkage(linkage: dict[str, Any]) -> dict[str, Any] | None:
    """The linkage attack with the highest top-1 (None when none ran)."""
    if not linkage:
        return None
    name = max(linkage, key=lambda k: linkage[k]["top1"])
    return {"attack": name, **{k: linkage[name][k] for k in
                               ("top1", "top5", "median_rank", "class_top1", "chance")}}


def _strongest(row: dict[str, Any]) -> dict[str, Any] | None:
    """The attack with the highest mean SSIM (the eavesdropper's view counts as an attack)."""
    scores = {"eavesdropper": row["eavesdropper"], **row["attacks"]}
    name = max(scores, key=lambda k: scores[k]["ssim"]["mean"])
    strongest = {"attack": name, "ssim": scores[name]["ssim"]["mean"],
                 "psnr": scores[name]["psnr"]["mean"]}
    if "ms_ssim" in scores[name]:
        strongest["ms_ssim"] = scores[name]["ms_ssim"]["mean"]
    return strongest


def run_attack_suite(defenses: list[Defense], setup: AttackSetup,
                     sweep: dict[str, Any] | None = None, log: Log = print,
                     partial: PartialResult | None = None) -> dict[str, Any]:
    """Every defense against every attack: the `veil attack` result (see `SCHEMA`). With
    `partial`, defenses it holds are reused and every new row is added to it as it finishes."""
    if not defenses:
        raise ValueError("nothing to attack: give obfuscator checkpoints, baselines or a λ sweep")
    names = [d.name for d in defenses]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ValueError(f"two defenses are both named {dup!r}")
    classifier = None
    if setup.classifier is not None:
        c = setup.classifier
        classifier = {**c.info(), "plain_acc": accuracy_on(c.model, setup.x, setup.y)}
    rows = []
    for d in defenses:
        row = partial.finished(d) if partial else None
        if row is not None:
            log(f"reusing {d.name}: finished by the run being resumed")
        else:
            log(f"attacking {d.name} ({d.description})")
            row = attack_defense(d, setup, log)
            if partial:
                row = partial.add(row)
        rows.append(row)
    points = [(r["name"], r["strongest"]["ssim"], r["accuracy"]) for r in rows
              if r["accuracy"] is not None]
    return {
        "schema": SCHEMA,
        "data": setup.data_info,
        "seed": setup.seed,
        "environment": environment(),
        "device": str(setup.device),
        "attacker_budget": setup.recorded_budget(),
        "reference": setup.reference(),
        "attacks": [{"name": a, "description": ATTACKS[a]} for a in setup.attacks],
        "classifier": classifier,
        "sweep": sweep,
        "defenses": rows,
        "pareto": pareto_front(points),
    }
