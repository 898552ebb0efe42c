#!/usr/bin/env bash
# issue 42 §1: both linkage attacks (the operator's, no training; the learned matcher, until
# flat or 1,200 s of training) on the shipped obfuscators: the 20-epoch asymptote (the new
# embedded default) and the previous 6-epoch default; gallery of 1,000 CIFAR-10 (JPEG-75) test
# photos (100 per class), seed 0, one thread. Resumable (--resume keeps finished defenses).
#   OBF=asymptote/model.pt OLD=old-default-obf.pt CLF=default-classifier.pt bash run_defaults.sh
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
DATA=$(realpath "$REPO/../shared/data/cifar10-jpeg75.zip")
exec "$REPO/.venv/bin/veil" attack --obfuscators "$OBF" "$OLD" --classifier "$CLF" \
  --attacks link_operator link_matcher --budget hour --matcher-seconds 1200 \
  --data "$DATA" --threads 1 --out "${OUT:-$REPO/results/cpu/linkage/defaults}" --resume --quiet
