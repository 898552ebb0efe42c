#!/usr/bin/env bash
# issue 23 §1: veil blackbox at the embedded default's recipe and schedule (staged: encoder warm
# start 8 epochs, 6 adversarial epochs, the whole public training split queried: 50,000 images),
# side by side with the shipped white-box default, both through one veil serve of the shipped
# fastnet, on the full test split. Runs from its own git worktree, so later changes to the code
# change nothing it runs; every step resumes (the query journal, the surrogate's and the
# obfuscator's saved states). A fresh machine seeds the run folder from resume/ (snapshot.sh).
#
# PIN: started at af7b3ff; moved to 2e8ed45 before any restart, because af7b3ff could not resume
# an obfuscator stopped inside its warm start. The commits between change nothing this run
# computes (a settings-file merge rule, a new fused op, benchmarks, tests).
set -euo pipefail
PIN=2e8ed45
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../bb}
HERE=$REPO/results/cpu/blackbox/full
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" $PIN
[ "$(git -C "$WT" rev-parse --short=7 HEAD)" = $PIN ] || git -C "$WT" checkout -q --detach $PIN
RUN=$WT/runs/blackbox-full
if [ ! -d "$RUN/blackbox" ] && [ -d "$HERE/resume" ]; then  # a fresh machine
  mkdir -p "$RUN/blackbox"
  cp -r "$HERE"/resume/* "$RUN/blackbox/"
  (cd "$RUN/blackbox" && find . -name '*.sha256' -execdir sha256sum -c --quiet {} +)
fi
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
