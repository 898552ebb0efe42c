#!/usr/bin/env bash
# issue 23 §1: veil blackbox at the embedded default's recipe and schedule (staged: encoder warm
# start 8 epochs, 6 adversarial epochs, the whole public training split queried: 50,000 images),
# side by side with the shipped white-box default, both through one veil serve of the shipped
# fastnet, on the full test split. Runs from its own git worktree of the commit that started it
# (af7b3ff); every step resumes (the query journal, the surrogate's and obfuscator's last.pt).
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../bb}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" af7b3ff
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
PY=$REPO/.venv/bin/python
mkdir -p runs
[ -f runs/default-obfuscator.pt ] || $PY -m veil.zoo.build \
  --extract-classifier runs/default-classifier.pt --extract-obfuscator runs/default-obfuscator.pt
exec $PY benchmarks/blackbox_vs_whitebox.py --classifier runs/default-classifier.pt \
  --data ../shared/data/cifar10-jpeg75.zip --out runs/blackbox-full --query-budget 50000 \
  --surrogate fastnet --surrogate-epochs 10 --train-subset 50000 --encoder-epochs 8 --epochs 6 \
  --whitebox-obfuscator runs/default-obfuscator.pt --eval-images 10000 --threads 1 --seed 0
