#!/usr/bin/env bash
# Copy the ensemble run's resumable states into resume/ for a commit, so that a later session on
# a fresh machine continues (run.sh) instead of starting over: each step's model.pt once trained,
# else its newest state (last.pt, else its warm-start stage file), with sha256 and logs.
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
RUNS=${WT:-$REPO/../en}/runs/heldout-ensemble
HERE=$REPO/results/cpu/heldout/ensemble
rm -rf "$HERE/resume"
for step in resnet9_narrow-s0 obfuscator; do
  [ -d "$RUNS/$step" ] || continue
  mkdir -p "$HERE/resume/$step"
  if [ -f "$RUNS/$step/model.pt" ]; then states=(model.pt)
  elif [ -f "$RUNS/$step/last.pt" ]; then states=(last.pt)
  else states=(); for f in "$RUNS/$step"/warm-start-*.pt; do [ -e "$f" ] && states+=("$(basename "$f")"); done
  fi
  for f in "${states[@]}"; do
    cp "$RUNS/$step/$f" "$HERE/resume/$step/"
    (cd "$HERE/resume/$step" && sha256sum "$f" > "$f.sha256")
  done
  for log in config.yaml metrics.jsonl curve.jsonl; do
    [ ! -f "$RUNS/$step/$log" ] || cp "$RUNS/$step/$log" "$HERE/resume/$step/"
  done
done
find "$HERE/resume" -type f | sort | xargs ls -la
