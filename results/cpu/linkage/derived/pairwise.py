"""Re-obfuscation between derived obfuscators: does a sibling link what another sends?

Every derived obfuscator here (away1/2/3: seed 20261207, λa = 1/2/3; sibling1/2: seeds 1 and 2,
λa = 1) and the shipped parent re-obfuscate the gallery (1,000 CIFAR-10 (JPEG-75) test photos,
class-balanced, seed 0, the exact photos), and each derived one's sends are linked to the
nearest. Writes pairwise.md beside this file (top-1 %, chance 0.1 %).

    PYTHONPATH=src .venv/bin/python results/cpu/linkage/derived/pairwise.py \
        --data ../shared/data/cifar10-jpeg75.zip
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from veil import zoo
from veil.attacks.defenses import Defense
from veil.attacks.linkage import gallery_indices, reobfuscation_linkage
from veil.core.runtime import environment
from veil.data import load_dataset, to_tensor_images
from veil.models.loading import load_obfuscator_pair

HERE = Path(__file__).parent
DERIVED = ("away1", "away2", "away3", "sibling1", "sibling2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(args.data)
    idx = gallery_indices(ds.test.labels, 1000, 0)
    x = to_tensor_images(ds.test.images[idx]).float().div(255)
    y = torch.as_tensor(ds.test.labels[idx])
    nets = {"parent": zoo.load("default").obfuscator.eval()}
    nets |= {n: load_obfuscator_pair(HERE / n / "model" / "model.pt")[0].eval() for n in DERIVED}
    rows = []
    for sender in DERIVED:
        sent = Defense(sender, "obfuscator", nets[sender]).transmit_all(x)
        cells = [f"{100 * reobfuscation_linkage(net, sent, x, y)['top1']:.1f}"
                 if name != sender else "–" for name, net in nets.items()]
        rows.append(f"| {sender} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    env = environment()
    text = "\n".join([
        "# Re-obfuscation between derived obfuscators", "",
        f"Top-1 % among {len(idx):,} test photos (chance 0.1 %): the row's obfuscator sends, "
        "the column's re-obfuscates every photo and takes the nearest (exact photos). "
        f"CIFAR-10 (JPEG-75), seed 0, {env['cpu']}, torch {env['torch']}; `pairwise.py`.", "",
        "| sends \\ re-obfuscates | " + " | ".join(nets) + " |",
        "|---|" + "---:|" * len(nets), *rows, ""])
    (HERE / "pairwise.md").write_text(text)


if __name__ == "__main__":
    main()
