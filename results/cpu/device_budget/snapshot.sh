#!/usr/bin/env bash
# Copy every lane's logs (config, metrics, curve) beside this script and its newest resumable
# state (last.pt after an epoch, else the warm start's stage file, with the sidecars veil wrote)
# into resume/RUN/, for a commit: a later session on a fresh machine continues from it (run.sh
# seeds its worktree from resume/) instead of starting over. Finished runs keep model.pt too.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
RUNS=${WT:-$REPO/../budget}/runs
for run in "$RUNS"/*/; do
  name=$(basename "$run")
  kind=veil; [[ $name == fastnet_device_* ]] && kind=device; [[ $name == cloud_* ]] && kind=cloud
  logs="$HERE/$kind/$name"; state="$HERE/resume/$name"
  mkdir -p "$logs" "$state"
  for f in config.yaml metrics.jsonl curve.jsonl; do [ ! -f "$run/$f" ] || cp "$run/$f" "$logs/"; done
  rm -f "$state"/*.pt "$state"/*.pt.sha256
  if [ -f "$run/model.pt" ]; then keep=(model.pt); rm -rf "$state"
  elif [ -f "$run/last.pt" ]; then keep=(last.pt)
  else mapfile -t keep < <(cd "$run" && ls warm-start-*.pt 2>/dev/null); fi
  for f in "${keep[@]}"; do
    dest=$([ "$f" = model.pt ] && echo "$logs" || echo "$state")
    mkdir -p "$dest" && cp "$run/$f" "$run/$f.sha256" "$dest/"
  done
  [ -d "$state" ] && [ -z "$(ls -A "$state")" ] && rmdir "$state"
  echo "$name: ${keep[*]:-nothing resumable yet}"
done
