#!/usr/bin/env bash
# issue 42 §1: the operator's linkage attack (no training) on no defense (identity) and the six
# heuristic baselines, scored with the shipped fastnet; gallery of 1,000 CIFAR-10 (JPEG-75) test
# photos (100 per class), seed 0, one thread. ATTACKS="link_operator link_matcher" adds the
# learned matcher (until flat or 1,200 s each).
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
mkdir -p runs
[ -f runs/default-classifier.pt ] || .venv/bin/python -m veil.zoo.build \
  --extract-classifier runs/default-classifier.pt
# shellcheck disable=SC2086
exec .venv/bin/veil attack --baselines identity all --classifier runs/default-classifier.pt \
  --attacks ${ATTACKS:-link_operator} --budget hour --matcher-seconds 1200 \
  --data ../shared/data/cifar10-jpeg75.zip --threads 1 \
  --out "${OUT:-results/cpu/linkage/baselines}" --resume --quiet
