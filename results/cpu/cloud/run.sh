#!/usr/bin/env bash
# issue 49, the paper's regime: cloud classifiers far above the device, then veil against them.
# Lanes, one thread each, resumable (every step passes --resume; rerun to continue):
#   bash run.sh m         cloudnet_m (333M MACs; 2.0G over six views): the >= 92 % target
#   bash run.sh s         cloudnet_s (118M MACs; 709M over six views): the ~90 % one of the
#                         first hour; then veil against it, fine-tuned from the shipped default
#   bash run.sh l         cloudnet_l (452M MACs, 17.3x the obfuscator; 2.7G over six views):
#                         the paper's regime's big cloud, 24 epochs over several sessions, in
#                         bf16 autocast (2.07x fp32's speed: results/cpu/classifier_step)
#   bash run.sh s-bf16    cloudnet_s again in bf16 autocast: does bf16 train as well as fp32?
#   bash run.sh device    the device alone with the cloud recipe's whitened stem, at the obfuscator's
#                         α = 1 cost (fastnet_device_a100_whitened, 26.1M MACs): the fair baseline
#                         check (15 epochs as the device family, crops of 2, six views reported)
#   bash run.sh snapshot  logs beside this script, newest resumable state into resume/RUN/ (for
#                         a commit: a later session's run.sh seeds its worktree from resume/)
# Each lane runs from its own git worktree of the commit that started it (m and s: ce5b502;
# l: 596bb8b; device: 6675330), so later changes to the code change nothing it runs.
# CIFAR-10 (JPEG-75) from ../shared, seed 0, torch 2.13.0+cpu.
set -euo pipefail
LANE=${1:?usage: run.sh m|s|l|s-bf16|device|snapshot}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
PY="$REPO/.venv/bin/python"
DATA=$(realpath "$REPO/../shared/data/cifar10-jpeg75.zip")
export VEIL_QUIET=1
enter() {  # worktree folder name, commit: make it if missing, cd into it
  WT=$REPO/../$1
  [ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" "$2"
  RUNS=$WT/runs
  cd "$WT" && mkdir -p "$RUNS" && export PYTHONPATH=$WT/src
}
seed_from_resume() {  # a fresh machine: continue from the committed state
  local name=$1
  mkdir -p "$RUNS/$name"
  if [ ! -e "$RUNS/$name/model.pt" ] && [ -f "$HERE/$name/model.pt" ]; then  # finished
    cp "$HERE/$name"/model.pt* "$RUNS/$name/"
  elif [ ! -e "$RUNS/$name/model.pt" ] && [ ! -e "$RUNS/$name/last.pt" ] \
      && [ -d "$HERE/resume/$name" ]; then
    cp "$HERE/resume/$name"/* "$RUNS/$name/"
    cp "$HERE/$name"/{config.yaml,metrics.jsonl,curve.jsonl} "$RUNS/$name/" 2>/dev/null || true
  fi
}
classifier() {  # model name [run name [more settings]]
  local model=$1 run=${2:-$1}
  shift; [ $# -eq 0 ] || shift
  seed_from_resume "$run"
  [ -f "$RUNS/$run/model.pt" ] || "$PY" -m veil train classifier --model "$model" \
    --data "$DATA" --out "$RUNS/$run" --threads 1 --seed 0 --resume "$@"
}
snapshot() {  # every run of the current worktree
  for run in "$RUNS"/*/; do
    name=$(basename "$run"); logs="$HERE/$name"; state="$HERE/resume/$name"
    mkdir -p "$logs"
    for f in config.yaml metrics.jsonl curve.jsonl; do
      [ ! -f "$run/$f" ] || cp "$run/$f" "$logs/"
    done
    relative="s|$(realpath "$REPO/../shared")/|../shared/|g; s|$WT/|../$(basename "$WT")/|g"
    [ ! -f "$logs/config.yaml" ] || sed -i "$relative" "$logs/config.yaml"
    rm -rf "$state"
    if [ -f "$run/model.pt" ]; then cp "$run/model.pt" "$run/model.pt.sha256" "$logs/"
    elif [ -f "$run/last.pt" ]; then mkdir -p "$state" && cp "$run"/last.pt* "$state/"; fi
    echo "$name: $(ls "$logs" "$state" 2>/dev/null | tr '\n' ' ')"
  done
}
case $LANE in
  m) enter cloud-lanes ce5b502 && classifier cloudnet_m ;;
  l) enter cloud-l 596bb8b && classifier cloudnet_l cloudnet_l --set precision=bf16 ;;
  s-bf16) enter cloud-lanes ce5b502 && classifier cloudnet_s cloudnet_s_bf16 --set precision=bf16 ;;
  device)
    enter cloud-device 6675330 && seed_from_resume fastnet_device_a100_whitened
    [ -f "$RUNS/fastnet_device_a100_whitened/model.pt" ] || "$PY" -m veil train classifier \
      --model fastnet_device_a100_whitened --epochs 15 --set whiten=true --set crop_padding=2 \
      --set view_averaged_eval=true --data "$DATA" --out "$RUNS/fastnet_device_a100_whitened" \
      --threads 1 --seed 0 --resume ;;
  s)
    enter cloud-lanes ce5b502 && classifier cloudnet_s
    [ -f "$RUNS/default-obfuscator.pt" ] || "$PY" -m veil.zoo.build \
      --extract-obfuscator "$RUNS/default-obfuscator.pt"
    seed_from_resume veil-cloudnet_s
    [ -f "$RUNS/veil-cloudnet_s/model.pt" ] || "$PY" -m veil train obfuscator \
      --classifier "$RUNS/cloudnet_s/model.pt" --data "$DATA" --out "$RUNS/veil-cloudnet_s" \
      --recipe staged --epochs 4 --lr 1e-3 --threads 1 --seed 0 \
      --set init="$RUNS/default-obfuscator.pt" --set lr_deobfuscator=1e-3 \
      --set lam_ramp_epochs=0 --set curve_every=20000 --resume ;;
  snapshot)
    (enter cloud-lanes ce5b502 && snapshot)
    [ ! -d "$REPO/../cloud-l" ] || (enter cloud-l 596bb8b && snapshot)
    [ ! -d "$REPO/../cloud-device" ] || (enter cloud-device 6675330 && snapshot) ;;
  *) echo "unknown lane $LANE" >&2; exit 2 ;;
esac
