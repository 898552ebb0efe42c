#!/usr/bin/env bash
# issue 23 §3: a classifier of an architecture no CPU obfuscator was trained against
# (resnet18_narrow: ResNet-18 at a quarter width), trained on plain CIFAR-10 (JPEG-75) with the
# default classifier recipe for 8 epochs, resumable. Runs from its own worktree of eb8c3a2 (the
# commit that added the architecture; the layout is unchanged since, tests/test_models.py pins it), so later changes to the code change nothing it trains.
set -euo pipefail
PIN=eb8c3a2
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../ho}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" $PIN
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
exec "$REPO/.venv/bin/python" -m veil train classifier --model resnet18_narrow \
  --data ../shared/data/cifar10-jpeg75.zip --out runs/heldout-resnet18_narrow --epochs 8 \
  --threads 1 --seed 0 --resume  # --resume on an empty folder starts the run
