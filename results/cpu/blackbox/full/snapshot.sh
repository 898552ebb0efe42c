#!/usr/bin/env bash
# Copy the black-box run's resumable states into resume/ for a commit, so that a later session on
# a fresh machine continues (run.sh) instead of starting over: the surrogate (its model.pt once
# trained, else last.pt) and the obfuscator's newest state (last.pt, else its warm-start stage
# file), each with its sha256, and their logs. queries.npz (150 MB) is not kept: run.sh queries
# again (the server answers the same images alike), and the surrogate is reused as it is.
set -euo pipefail
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
RUN=${WT:-$REPO/../bb}/runs/blackbox-full/blackbox
HERE=$REPO/results/cpu/blackbox/full
rm -rf "$HERE/resume"
for step in surrogate obfuscator; do
  [ -d "$RUN/$step" ] || continue
  mkdir -p "$HERE/resume/$step"
  if [ -f "$RUN/$step/model.pt" ]; then states=(model.pt)
  elif [ -f "$RUN/$step/last.pt" ]; then states=(last.pt)
  else states=(); for f in "$RUN/$step"/warm-start-*.pt; do [ -e "$f" ] && states+=("$(basename "$f")"); done
  fi
  for f in "${states[@]}"; do
    cp "$RUN/$step/$f" "$HERE/resume/$step/"
    (cd "$HERE/resume/$step" && sha256sum "$f" > "$f.sha256")
  done
  for log in config.yaml metrics.jsonl curve.jsonl; do
    [ ! -f "$RUN/$step/$log" ] || cp "$RUN/$step/$log" "$HERE/resume/$step/"
  done
done
find "$HERE/resume" -type f | sort | xargs ls -la
