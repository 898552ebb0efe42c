#!/usr/bin/env bash
# issue 23 §1, one lever: the finished black-box obfuscator (../full/resume) refined on the
# server's answers to its own obfuscated images, with two controls at the same extra budget (the
# black-box obfuscator one more epoch against the unrefined surrogate; the white-box default one
# more epoch against the real classifier). Runs from its own git worktree, so later changes to
# the code change nothing it runs; every step resumes from its files in the run folder.
set -euo pipefail
PIN=e8b7417
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../rf}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" $PIN
[ "$(git -C "$WT" rev-parse --short=7 HEAD)" = $PIN ] || git -C "$WT" checkout -q --detach $PIN
cd "$WT"
export PYTHONPATH=$WT/src
PY=$REPO/.venv/bin/python
mkdir -p runs
[ -f runs/default-obfuscator.pt ] || $PY -m veil.zoo.build \
  --extract-classifier runs/default-classifier.pt --extract-obfuscator runs/default-obfuscator.pt
RUN=runs/blackbox-refine
DATA=../shared/data/cifar10-jpeg75.zip
$PY benchmarks/blackbox_refine.py --classifier runs/default-classifier.pt \
  --blackbox "$REPO/results/cpu/blackbox/full/resume" --whitebox runs/default-obfuscator.pt \
  --data $DATA --out $RUN --threads 2 --seed 0
# the strongest fresh attacker on the refined obfuscator (attack/); it was trained against the
# refined surrogate, so that is the classifier veil attack is given
[ -f $RUN/attack/attacks.json ] || $PY -m veil.cli attack \
  --obfuscators $RUN/blackbox_refined/model.pt --classifier $RUN/surrogate/model.pt \
  --attacks unet --budget full --data $DATA --out $RUN/attack \
  --threads 2 --test-subset 2000 --quiet
