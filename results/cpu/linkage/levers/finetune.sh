#!/usr/bin/env bash
# issue 42 §2, the quick look: levers as one more adversarial epoch on top of the shipped default
# (--set init=, no warm start, λ = 1 from the first step, one-cycle lr 5e-4), one thread, seed 0,
# against the shipped fastnet, CIFAR-10 (JPEG-75); then accuracy (the run's own evaluation on the
# 10,000 test images) and the operator's linkage (1,000-photo gallery). In this order:
#   ft-nofeat-link1  the dense feature target off + a co-trained matcher (λ_l = 1, width 16)
#   ft-control       the same extra epoch with neither change (what one more epoch alone does)
#   ft-link1         the co-trained matcher alone
# Resumable: rerun it. From its own worktree of PIN.
set -euo pipefail
PIN=7d0658a
LANE=levers
source "$(dirname "$0")/../lane-setup.sh"
finetune() {  # name, then --set settings
  local name=$1; shift
  [ -f "runs/$name/model.pt" ] || "$PY" -m veil train obfuscator \
    --classifier runs/default-classifier.pt --data "$DATA" --out "runs/$name" --recipe staged \
    --epochs 1 --lr 5e-4 --threads 1 --set init=runs/default-obfuscator.pt \
    --set lr_deobfuscator=5e-4 --set lam_ramp_epochs=0 "$@" --resume
  [ -f "runs/$name-link/attacks.json" ] || "$PY" -m veil attack --obfuscators "runs/$name/model.pt" \
    --classifier runs/default-classifier.pt --attacks link_operator --data "$DATA" --threads 1 \
    --out "runs/$name-link" --resume --quiet
  mkdir -p "$HERE/$name"
  cp "runs/$name/config.yaml" "runs/$name/metrics.jsonl" "runs/$name-link/attacks.json" \
    "runs/$name-link/attacks.md" "$HERE/$name/"
}
finetune ft-nofeat-link1 --set feature_weight=0 --set lam_link=1
finetune ft-control
finetune ft-link1 --set lam_link=1
