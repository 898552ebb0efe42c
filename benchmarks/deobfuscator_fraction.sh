#!/usr/bin/env bash
# What the deobfuscator_fraction lever costs in privacy (issue 22 §2): the same short staged run
# with the co-trained deobfuscator on the whole batch and on a quarter of it, then the strongest
# fresh attacker of results/cpu/default_attack (U-Net 48, MSE and MSE + SSIM, until flat) on each.
#
#   bash benchmarks/deobfuscator_fraction.sh [OUT] [DATA]
#
# Resumable: a finished run is kept, a stopped one continues (--resume).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/cpu/adversarial_step/deobfuscator_fraction/privacy}
DATA=${2:-../shared/data/cifar10-jpeg75.zip}
PY=${PYTHON:-.venv/bin/python}
CLF=runs/default-classifier.pt
[ -f "$CLF" ] || "$PY" -m veil.zoo.build --extract-classifier "$CLF"
for fraction in 1 0.25; do
  run=$OUT/runs/fraction-$fraction
  [ -f "$run/model.pt" ] && continue
  resume=(); [ -f "$run/last.pt" ] && resume=(--resume)
  "$PY" -m veil train obfuscator --classifier "$CLF" --data "$DATA" --out "$run" \
    --recipe staged --epochs 2 --seed 0 --threads 1 --quiet "${resume[@]}" \
    --set train_subset=10000 --set warm_start=encoder:2 --set curve_every=5000 \
    --set deobfuscator_fraction="$fraction"
done
"$PY" benchmarks/learning_speed.py --runs "$OUT/runs" --data "$DATA" --out "$OUT" \
  --attack-images 30000 --attack-s 100000 --unet-width 48 --ssim-weights 0 1 --threads 1
