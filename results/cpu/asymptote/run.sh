#!/usr/bin/env bash
# issue 22 §1: the default's exact recipe (staged) for 20 adversarial epochs, resumable.
# Runs from its own git worktree of the commit that started it (45c4e69), so later changes to
# the code change nothing it runs. A fresh machine seeds the run folder from resume/ (the last
# state snapshot.sh committed) and continues with --resume.
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../asym}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" 45c4e69
RUN=$WT/runs/asymptote-staged20
HERE=$REPO/results/cpu/asymptote
# a fresh machine: continue from the state snapshot.sh committed (last.pt after an epoch, or a
# warm-start stage's state during the warm start)
if [ ! -d "$RUN" ] && ls "$HERE"/resume/*.pt > /dev/null 2>&1; then
  mkdir -p "$RUN"
  cp "$HERE"/resume/*.pt "$HERE"/resume/*.pt.sha256 "$HERE/config.yaml" "$RUN/"
  for log in curve.jsonl metrics.jsonl; do [ ! -f "$HERE/$log" ] || cp "$HERE/$log" "$RUN/"; done
  (cd "$RUN" && sha256sum -c --quiet ./*.pt.sha256)  # a damaged copy stops here
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
