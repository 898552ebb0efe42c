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
LANE=randomised
source "$(dirname "$0")/../lane-setup.sh"
RUN=runs/noise$SIGMA
[ -f "$RUN/model.pt" ] || "$PY" -m veil train obfuscator --classifier runs/default-classifier.pt \
  --data "$DATA" --out "$RUN" --recipe staged --epochs 1 --lr 5e-4 --threads 1 \
  --set init=runs/default-obfuscator.pt --set lr_deobfuscator=5e-4 --set lam_ramp_epochs=0 \
  --set bottleneck_noise="$SIGMA" --set curve_every=10000 --resume
mkdir -p "$HERE/noise$SIGMA-model"
cp "$RUN"/{config.yaml,metrics.jsonl,curve.jsonl,model.pt,model.pt.sha256} "$HERE/noise$SIGMA-model/"
sed -i "s|$(realpath "$REPO/../shared")/|../shared/|g; s|$WT/|../randomised/|g" \
  "$HERE/noise$SIGMA-model/config.yaml"
"$PY" -m veil attack --obfuscators "$RUN/model.pt" --classifier runs/default-classifier.pt \
  --attacks link_operator link_reobfuscate link_fit link_matcher cotrained --budget hour \
  --matcher-seconds 1800 --matcher-eval-every 10000 --data "$DATA" --threads 1 \
  --out "$HERE/noise$SIGMA" --resume --quiet
