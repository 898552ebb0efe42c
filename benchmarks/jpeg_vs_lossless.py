"""What the JPEG-75 copy of CIFAR-10 itself costs: one classifier (and optionally its obfuscator)
scored on the 1,000 test images of the lossless slice and on the same images from the JPEG copy.

    python benchmarks/jpeg_vs_lossless.py --classifier CKPT [--obfuscator CKPT] \
        [--lossless ../shared/data/cifar10-lossless-subset.npz] \
        [--data ../shared/data/cifar10-jpeg75.zip] [--out results/cpu/jpeg_vs_lossless]

Writes OUT/jpeg_vs_lossless.json and .md. Both versions are the same pictures in the same order,
so the difference is paired: the table also counts the images only one version gets right.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from veil.core.eightbit import quantize_8bit
from veil.core.files import sha256_of
from veil.core.runtime import environment
from veil.data import Split, TensorLoader, load_dataset
from veil.data.lossless import jpeg_twins, load_lossless_slice
from veil.models.loading import load_classifier, load_obfuscator_pair
from veil.report.results import write_result

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@torch.no_grad()
def correct(split: Split, classifier, obfuscator=None, batch: int = 250) -> np.ndarray:
    """Per image: does the classifier get it right (on the 8-bit obfuscated image if given)?"""
    out = []
    for x, y in TensorLoader(split, batch):  # unshuffled: the split's order
        if obfuscator is not None:
            x = quantize_8bit(obfuscator(x))
        out.append((classifier(x).argmax(1) == y).numpy())
    return np.concatenate(out)


def compare(lossless: np.ndarray, jpeg: np.ndarray) -> dict[str, float | int]:
    return {"lossless_acc": float(lossless.mean()), "jpeg_acc": float(jpeg.mean()),
            "difference_pp": round(100 * float(lossless.mean() - jpeg.mean()), 2),
            "only_lossless_right": int((lossless & ~jpeg).sum()),
            "only_jpeg_right": int((jpeg & ~lossless).sum())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classifier", required=True)
    p.add_argument("--obfuscator")
    p.add_argument("--lossless", default=str(SHARED / "cifar10-lossless-subset.npz"))
    p.add_argument("--data", default=str(SHARED / "cifar10-jpeg75.zip"))
    p.add_argument("--out", default="results/cpu/jpeg_vs_lossless")
    args = p.parse_args(argv)

    lossless = load_lossless_slice(args.lossless)["test"]
    jpeg = jpeg_twins(lossless, load_dataset(args.data).test)
    classifier, payload = load_classifier(args.classifier, "cpu")
    rows = {"plain": compare(correct(lossless, classifier), correct(jpeg, classifier))}
    if args.obfuscator:
        obfuscator = load_obfuscator_pair(args.obfuscator)[0]
        rows["obfuscated_8bit"] = compare(correct(lossless, classifier, obfuscator),
                                          correct(jpeg, classifier, obfuscator))
    rmse = float(np.sqrt(((jpeg.images.astype(np.float64) - lossless.images) ** 2).mean()))
    result = {"schema": "veil.jpeg_vs_lossless/1", "images": len(lossless),
              "rmse_0_255": round(rmse, 2),
              "classifier": {"path": args.classifier, "sha256": sha256_of(args.classifier),
                             "model_name": payload["model_name"],
                             "trained_on": payload.get("data", {})},
              "obfuscator": args.obfuscator and {"path": args.obfuscator,
                                                 "sha256": sha256_of(args.obfuscator)},
              "rows": rows, "environment": environment()}
    print(write_result(result, args.out)[1].read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
