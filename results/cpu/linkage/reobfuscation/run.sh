#!/usr/bin/env bash
# issue 51 §1: the simplest linkage attack on the shipped obfuscators. Whoever holds an
# obfuscator's weights (a shipped zoo entry's: everyone) re-obfuscates every candidate photo and
# takes the nearest; scored beside the operator's attack, over a gallery of 1,000 CIFAR-10
# (JPEG-75) test photos (100 per class), seed 0, one thread, torch 2.13.0+cpu:
#   own/      the default and the ensemble entry, each re-obfuscated with its own weights, as is
#             and sending with fresh Gaussian noise of std 0.1 and 0.3 per request
#   sibling/  the default, re-obfuscated with the ensemble entry's weights (another obfuscator
#             for the same classifier)
# Resumable (--resume keeps the finished defenses). Run from anywhere.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
PY=.venv/bin/python
HERE=results/cpu/linkage/reobfuscation
mkdir -p runs
[ -f runs/default-classifier.pt ] || $PY -m veil.zoo.build --extract-classifier runs/default-classifier.pt
for name in default ensemble; do
  [ -f "runs/$name-obfuscator.pt" ] || $PY -m veil.zoo.build \
    --name "$name" --extract-obfuscator "runs/$name-obfuscator.pt" \
    --classifier runs/default-classifier.pt
done
common=(--classifier runs/default-classifier.pt --attacks link_operator link_reobfuscate
        --data ../shared/data/cifar10-jpeg75.zip --threads 1 --resume --quiet)
.venv/bin/veil attack --obfuscators runs/default-obfuscator.pt runs/ensemble-obfuscator.pt \
  --send-noise 0 0.1 0.3 --out "$HERE/own" "${common[@]}"
.venv/bin/veil attack --obfuscators runs/default-obfuscator.pt \
  --attacker-weights runs/ensemble-obfuscator.pt --out "$HERE/sibling" "${common[@]}"
