#!/usr/bin/env bash
# issue 42 §2: levers against linkage, side by side at the embedded default's first schedule
# (staged: encoder warm start 8 epochs, then 6 adversarial epochs, λ = 1, seed 0), one thread,
# against the shipped fastnet, CIFAR-10 (JPEG-75). One lever per run, in this order:
#   nofeat-link1  the dense feature target off (feature_weight 0) + a co-trained matcher, λ_l = 1
#   nofeat        the dense feature target off alone
#   link1         the co-trained matcher alone (feature target kept)
# The 6-epoch default (79.86 %; its linkage: ../defaults/) is the baseline. Resumable: rerun it.
# Runs from its own worktree of PIN so later changes to the code change nothing it runs.
set -euo pipefail
PIN=24f6bbd
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
WT=${WT:-$REPO/../levers}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" $PIN
DATA=$(realpath "$REPO/../shared/data/cifar10-jpeg75.zip")
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
PY="$REPO/.venv/bin/python"
mkdir -p runs
[ -f runs/default-classifier.pt ] || "$PY" -m veil.zoo.build --name default \
  --extract-classifier runs/default-classifier.pt
lever() {  # name, then --set settings
  local name=$1; shift
  "$PY" -m veil train obfuscator --classifier runs/default-classifier.pt --data "$DATA" \
    --out "runs/$name" --recipe staged --threads 1 --set curve_every=20000 "$@" --resume
}
lever nofeat-link1 --set feature_weight=0 --set lam_link=1
lever nofeat --set feature_weight=0
lever link1 --set lam_link=1
