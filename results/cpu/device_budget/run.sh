#!/usr/bin/env bash
# issue 43 §1-2: the device-budget curve. Two lanes, one thread each, resumable:
#   bash run.sh device   the device alone: fastnet_device_a025 / a050 / a100 (MACs of the
#                        obfuscator at α = 0.25 / 0.5 / 1), the shipped fastnet's recipe
#   bash run.sh veil     veil: obfuscators at α = 0.25 and 0.5 against the shipped fastnet,
#                        the embedded default's recipe (staged, 6 adversarial epochs)
#   bash run.sh cloud    a cloud classifier far above the device: the full-width resnet9
#                        (379M MACs, 146x the α = 0.25 obfuscator), the fastnet recipe
# Runs from its own git worktree of the commit that started it (319bf92), so later changes to
# the code change nothing it runs; every step passes --resume, so rerunning continues.
set -euo pipefail
LANE=${1:?usage: run.sh device|veil|cloud}
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../budget}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" 319bf92
DATA=$(realpath "$REPO/../shared/data/cifar10-jpeg75.zip")
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
PY="$REPO/.venv/bin/python"
mkdir -p runs
case $LANE in
  device)
    for name in fastnet_device_a025 fastnet_device_a050 fastnet_device_a100; do
      "$PY" -m veil train classifier --config "$REPO/results/cpu/default/classifier/config.yaml" \
        --model "$name" --data "$DATA" --out "runs/$name" --threads 1 --resume
    done ;;
  veil)
    [ -f runs/default-classifier.pt ] || \
      "$PY" -m veil.zoo.build --extract-classifier runs/default-classifier.pt
    for alpha in 0.25 0.5; do
      "$PY" -m veil train obfuscator --classifier runs/default-classifier.pt --data "$DATA" \
        --out "runs/veil-a$alpha" --recipe staged --threads 1 --set curve_every=20000 \
        --set width="$alpha" --resume
    done ;;
  cloud)
    "$PY" -m veil train classifier --config "$REPO/results/cpu/default/classifier/config.yaml" \
      --model resnet9 --data "$DATA" --out runs/cloud_resnet9 --threads 1 --resume ;;
  *) echo "unknown lane $LANE" >&2; exit 2 ;;
esac
