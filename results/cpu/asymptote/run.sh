#!/usr/bin/env bash
# issue 22 §1: the default's exact recipe (staged) for 20 adversarial epochs, resumable.
# Runs from its own git worktree of the commit that started it (45c4e69), so later changes to
# the code change nothing it runs. A fresh session seeds the run folder from resume/ (the
# classifier it trains against and the last checkpoint) and continues with --resume.
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../asym}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" 45c4e69
RUN=$WT/runs/asymptote-staged20
HERE=$REPO/results/cpu/asymptote
if [ ! -f "$RUN/last.pt" ] && [ -f "$HERE/resume/last.pt" ]; then
  mkdir -p "$RUN"
  cp "$HERE/resume/last.pt" "$HERE/resume/last.pt.sha256" "$HERE/metrics.jsonl" \
     "$HERE/curve.jsonl" "$HERE/config.yaml" "$RUN/"
fi
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
mkdir -p runs
# the shipped fastnet, extracted by the worktree's own code (deterministic: fp16 weights → fp32)
[ -f runs/default-classifier.pt ] || \
  "$REPO/.venv/bin/python" -m veil.zoo.build --extract-classifier runs/default-classifier.pt
exec "$REPO/.venv/bin/python" -m veil train obfuscator --classifier runs/default-classifier.pt \
  --data ../shared/data/cifar10-jpeg75.zip --out runs/asymptote-staged20 --recipe staged \
  --epochs 20 --threads 1 --curve-every 20000 --resume
