#!/usr/bin/env bash
# issue 42 §1: the operator's linkage attack (no training) on no defense (identity) and the six
# heuristic baselines, scored with the shipped fastnet; gallery of 1,000 CIFAR-10 (JPEG-75) test
# photos (100 per class), seed 0, one thread. The learned matcher on the baselines is not run
# here (CPU time went to the shipped obfuscators first).
#   CLF=default-classifier.pt bash run_baselines.sh
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
DATA=$(realpath "$REPO/../shared/data/cifar10-jpeg75.zip")
exec "$REPO/.venv/bin/veil" attack --baselines identity all --classifier "$CLF" \
  --attacks link_operator --data "$DATA" --threads 1 \
  --out "${OUT:-$REPO/results/cpu/linkage/baselines}" --resume --quiet
