#!/usr/bin/env bash
# issue 23 §1-§2: what each query point's surrogate is worth to the obfuscator trained against it.
# One staged obfuscator per point at one small equal budget (10,000 training images, 4 encoder
# epochs, 2 adversarial epochs), the white box at the same budget, all measured through one real
# server on the 10,000 test images. Runs from its own worktree of e218108; each point resumes in
# its folder. Needs the surrogates of ../answers/run.sh (SURROGATES).
set -euo pipefail
PIN=e218108
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../bo}
SURROGATES=${SURROGATES:-$REPO/../ba/runs/blackbox-answers}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" "$PIN"
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
PY=$REPO/.venv/bin/python
mkdir -p runs
[ -f runs/default-classifier.pt ] || $PY -m veil.zoo.build --extract-classifier runs/default-classifier.pt
exec $PY benchmarks/blackbox_obfuscated.py --surrogates "$SURROGATES" \
  --classifier runs/default-classifier.pt --data ../shared/data/cifar10-jpeg75.zip \
  --out runs/blackbox-obfuscated --threads 1 --seed 0 \
  --points whitebox 50000-probs 2000-probs 10000-probs 2000-label 10000-label 50000-label 50000-topk3
