#!/usr/bin/env bash
# issue 51 §4: randomness inside the obfuscator. The shipped default fine-tuned with fresh
# Gaussian noise (std $SIGMA, on a unit-RMS code) drawn into its bottleneck on every call, one
# adversarial epoch (staged recipe, lr 5e-4, λ = 1 from the first step, --set init=), one
# thread, seed 0, against the shipped fastnet, CIFAR-10 (JPEG-75); then every linkage attack
# with its weights (re-obfuscation noise-free and averaged, fitting the noise, a learned matcher
# on randomised pairs until flat or 1,800 s) and the operator's, gallery of 1,000 test photos.
# Resumable: rerun it. From its own worktree of PIN.
set -euo pipefail
PIN=${PIN:?set PIN to the commit to run}
SIGMA=${SIGMA:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
WT=${WT:-$REPO/../randomised}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" "$PIN"
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
PY="$REPO/.venv/bin/python"
DATA=$(realpath "$REPO/../shared/data/cifar10-jpeg75.zip")
mkdir -p runs
[ -f runs/default-classifier.pt ] || "$PY" -m veil.zoo.build --extract-classifier runs/default-classifier.pt
[ -f runs/default-obfuscator.pt ] || "$PY" -m veil.zoo.build \
  --extract-obfuscator runs/default-obfuscator.pt --classifier runs/default-classifier.pt
RUN=runs/noise$SIGMA
[ -f "$RUN/model.pt" ] || "$PY" -m veil train obfuscator --classifier runs/default-classifier.pt \
  --data "$DATA" --out "$RUN" --recipe staged --epochs 1 --lr 5e-4 --threads 1 \
  --set init=runs/default-obfuscator.pt --set lr_deobfuscator=5e-4 --set lam_ramp_epochs=0 \
  --set bottleneck_noise="$SIGMA" --set curve_every=10000 --resume
cp "$RUN"/{config.yaml,metrics.jsonl} "$HERE/" 2>/dev/null || true
"$PY" -m veil attack --obfuscators "$RUN/model.pt" --classifier runs/default-classifier.pt \
  --attacks link_operator link_reobfuscate link_fit link_matcher cotrained --budget hour \
  --matcher-seconds 1800 --matcher-eval-every 10000 --data "$DATA" --threads 1 \
  --out "$HERE/noise$SIGMA" --resume --quiet
