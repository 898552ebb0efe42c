"""The paper's Tables 1-3 for trained classifiers and obfuscators.

Table 1: per (classifier, obfuscator it was trained for): plain and 8-bit obfuscated accuracy and
the obfuscator's FLOPs / parameter overhead. Table 2: original / obfuscated / reconstructed images
(co-trained deobfuscator), one or more per class. Table 3: every obfuscator on every classifier,
with the members each was trained against (an ensemble's are several; the rest are held out).

Given device-alone classifiers (a classifier the device could run instead, sending nothing),
Table 1 also gives each obfuscator's **offloading gain**: its obfuscated accuracy minus the
accuracy of the device-alone classifier of the same device cost (MACs within ±10 %).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..batches import accuracy_on, batched, sent_images, test_images
from ..core.runtime import environment
from ..data import Dataset
from ..metrics import image_scores
from ..models.complexity import count_macs, count_params
from ..report.figures import encode_strip
from ..report.kinds.evaluation import TABLES_SCHEMA as SCHEMA
from ..run_inputs import LoadedClassifier, LoadedObfuscator

EQUAL_COST = 0.10  # a device-alone classifier counts at an obfuscator's budget within ±10 % MACs


def grid_indices(labels: np.ndarray, per_class: int, num_classes: int) -> list[int]:
    """The first `per_class` test images of every class, class by class."""
    out = []
    for c in range(num_classes):
        out += [int(i) for i in np.flatnonzero(labels == c)[:per_class]]
    if not out:
        raise ValueError("no test images to show")
    return out


def complexity(model: nn.Module) -> dict[str, int]:
    return {"params": count_params(model), "macs": count_macs(model)}


def offloading_gain(obfuscated_acc: float, device_acc: float) -> dict[str, Any]:
    """Obfuscated accuracy through the cloud minus the device alone's, in points, and in words."""
    gain = round(100 * (obfuscated_acc - device_acc), 2)
    verdict = (f"offloading pays: {gain:+.2f} points over the device alone" if gain > 0 else
               f"offloading does not pay: {gain:+.2f} points against the device alone, which "
               "also sends nothing")
    return {"offloading_gain_pp": gain, "offloading_pays": gain > 0, "verdict": verdict}


def device_baseline_at(macs: int, devices: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The device-alone classifier closest in MACs to `macs`, if within ±10 %."""
    near = [d for d in devices if abs(d["macs"] / macs - 1) <= EQUAL_COST]
    return min(near, key=lambda d: abs(d["macs"] - macs)) if near else None


def evaluate_tables(classifiers: list[LoadedClassifier], obfuscators: list[LoadedObfuscator],
                    ds: Dataset, data_info: dict[str, Any], device: torch.device, seed: int = 0,
                    per_class: int = 1, scale: int = 4,
                    device_alone: list[LoadedClassifier] | None = None) -> dict[str, Any]:
    """Tables 1-3 as one JSON-ready dict (see `SCHEMA`); with `device_alone` classifiers,
    Table 1's offloading gain at each obfuscator's device cost."""
    if not classifiers:
        raise ValueError("no classifiers to evaluate (--classifiers)")
    x = test_images(ds, device)
    y = torch.as_tensor(ds.test.labels, device=device)
    clf_rows = [{**c.info(), **complexity(c.model), "plain_acc": accuracy_on(c.model, x, y)}
                for c in classifiers]
    devices = [{**c.info(), **complexity(c.model), "accuracy": accuracy_on(c.model, x, y)}
               for c in device_alone or []]
    obf_rows, matrix, table1, table2, members = [], [], [], [], []
    show = grid_indices(ds.test.labels, per_class, len(ds.classes))
    for o in obfuscators:
        sent = sent_images(o.obfuscator, x)
        rebuilt = batched(o.deobfuscator, sent).clamp(0, 1)
        size = complexity(o.obfuscator)
        members.append(_members(o, classifiers))
        obf_rows.append({**o.info(), **size,
                         "trained_for": [classifiers[j].label for j in members[-1]]})
        matrix.append([accuracy_on(c.model, sent, y) for c in classifiers])
        k = classifiers.index(o.classifier)
        clf = clf_rows[k]
        table1.append(_table1_row(o, clf, matrix[-1][k], size))
        if devices:
            table1[-1]["device_alone"] = _device_alone(size["macs"], matrix[-1][k], devices)
        table2.append({"obfuscator": o.label, "eavesdropper": image_scores(x, sent),
                       "deobfuscator": image_scores(x, rebuilt),
                       "grid": _grid(x, sent, rebuilt, show, ds, per_class, scale)})
    return {
        "schema": SCHEMA,
        "data": data_info,
        "seed": seed,
        "environment": environment(),
        "device": str(device),
        "attacker_budget": {
            "attack": "cotrained",
            "note": "Tables 1-2 reconstruct with each obfuscator's co-trained deobfuscator; its "
                    "training budget is the obfuscator's (epochs, train_subset in 'obfuscators'). "
                    "Fresh-decoder and inversion attacks: `veil attack`.",
        },
        "classifiers": clf_rows,
        **({"device_alone": devices} if devices else {}),
        "obfuscators": obf_rows,
        "table1": table1,
        "table2": table2,
        "table3": {"classifiers": [c.label for c in classifiers],
                   "obfuscators": [o.label for o in obfuscators],
                   "plain_acc": [r["plain_acc"] for r in clf_rows],
                   "accuracy": matrix,
                   "trained_for": [classifiers.index(o.classifier) for o in obfuscators],
                   "members": members},
    }


def _members(o: LoadedObfuscator, classifiers: list[LoadedClassifier]) -> list[int]:
    """The columns of Table 3 that `o` was trained against: its classifier and, for an
    ensemble, every further member given (the others are held out from it)."""
    return [j for j, c in enumerate(classifiers)
            if c is o.classifier or c.sha256 in o.ensemble_sha256]


def _table1_row(o: LoadedObfuscator, clf: dict[str, Any], obfuscated_acc: float,
                size: dict[str, int]) -> dict[str, Any]:
    return {"classifier": clf["label"], "obfuscator": o.label, "plain_acc": clf["plain_acc"],
            "obfuscated_acc": obfuscated_acc,
            "drop_pp": round(100 * (clf["plain_acc"] - obfuscated_acc), 2),
            "classifier_macs": clf["macs"], "classifier_params": clf["params"],
            "obfuscator_macs": size["macs"], "obfuscator_params": size["params"],
            "flops_overhead_pct": round(100 * size["macs"] / clf["macs"], 2),
            "params_overhead_pct": round(100 * size["params"] / clf["params"], 2)}


def _device_alone(macs: int, obfuscated_acc: float, devices: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    match = device_baseline_at(macs, devices)
    if match is None:
        return {"classifier": None, "verdict": f"no device-alone classifier within ±"
                                               f"{100 * EQUAL_COST:.0f} % of {macs:,} MACs"}
    return {"classifier": match["label"], "macs": match["macs"], "accuracy": match["accuracy"],
            **offloading_gain(obfuscated_acc, match["accuracy"])}


def _grid(x: torch.Tensor, sent: torch.Tensor, rebuilt: torch.Tensor, show: list[int],
          ds: Dataset, per_class: int, scale: int) -> dict[str, Any]:
    return {"indices": show, "labels": [ds.classes[int(ds.test.labels[i])] for i in show],
            "per_class": per_class, "scale": scale,
            "rows": {"original": encode_strip(x[show]), "obfuscated": encode_strip(sent[show]),
                     "reconstructed": encode_strip(rebuilt[show])}}
