#!/usr/bin/env bash
# issue 23 §3: an ensemble obfuscator for a cloud model of unknown architecture. Two classifiers
# of two families, neither of them resnet18_narrow (the held-out one): the shipped fastnet and a
# resnet9_narrow trained here (5 epochs, seed 0, as results/cpu/tables' resnet9_narrow-s0). The
# obfuscator is the embedded default's schedule (staged: encoder warm start 8 epochs, then 6
# adversarial epochs, λ = 1) with --ensemble-mode cycle, which transferred best in Table 3.
# One thread, seed 0, resumable at every epoch, from its own worktree of PIN; a fresh machine
# seeds the run folders from resume/ (snapshot.sh).
set -euo pipefail
PIN=0cb9e9b
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../en}
HERE=$REPO/results/cpu/heldout/ensemble
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" $PIN
RUNS=$WT/runs/heldout-ensemble
if [ ! -d "$RUNS" ] && [ -d "$HERE/resume" ]; then  # a fresh machine
  mkdir -p "$RUNS" && cp -r "$HERE"/resume/* "$RUNS/"
  (cd "$RUNS" && find . -name '*.sha256' -execdir sha256sum -c --quiet {} +)
fi
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
veil() { "$REPO/.venv/bin/python" -m veil "$@"; }
DATA=../shared/data/cifar10-jpeg75.zip
mkdir -p "$RUNS"
[ -f runs/default-classifier.pt ] || "$REPO/.venv/bin/python" -m veil.zoo.build \
  --extract-classifier runs/default-classifier.pt
[ -f "$RUNS/resnet9_narrow-s0/model.pt" ] || veil train classifier --model resnet9_narrow \
  --seed 0 --epochs 5 --data $DATA --out "$RUNS/resnet9_narrow-s0" --threads 1 --resume --quiet
[ -f "$RUNS/obfuscator/model.pt" ] || veil train obfuscator --recipe staged \
  --classifier runs/default-classifier.pt --classifier "$RUNS/resnet9_narrow-s0/model.pt" \
  --set ensemble_mode=cycle --data $DATA --out "$RUNS/obfuscator" --threads 1 --seed 0 \
  --resume --quiet
# the fresh attacker on the final model (attack-final/)
[ -f "$RUNS/attack-final/attacks.json" ] || veil attack --obfuscators "$RUNS/obfuscator/model.pt" \
  --classifier runs/default-classifier.pt --attacks unet --budget full --data $DATA \
  --out "$RUNS/attack-final" --threads 1 --test-subset 2000 --quiet
echo "done: $RUNS/obfuscator/model.pt, $RUNS/attack-final/attacks.md"
