#!/usr/bin/env bash
# Copy the running asymptote's resumable state into resume/ (and its logs beside this script),
# for a commit: a later session on a fresh machine then continues from it (run.sh) instead of
# starting over. Only the newest state is kept: last.pt once an epoch is done, else the warm
# start's stage file.
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
RUN=${WT:-$REPO/../asym}/runs/asymptote-staged20
HERE=$REPO/results/cpu/asymptote
mkdir -p "$HERE/resume"
rm -f "$HERE"/resume/*.pt "$HERE"/resume/*.pt.sha256
if [ -f "$RUN/last.pt" ]; then states=(last.pt); else states=("$RUN"/warm-start-*.pt); fi
for f in "${states[@]}"; do
  f=$(basename "$f")
  cp "$RUN/$f" "$HERE/resume/"
  (cd "$HERE/resume" && sha256sum "$f" > "$f.sha256")
done
for log in config.yaml curve.jsonl metrics.jsonl; do [ ! -f "$RUN/$log" ] || cp "$RUN/$log" "$HERE/"; done
ls -la "$HERE/resume"
