#!/usr/bin/env bash
# A fresh machine: seed each lane's run folders from the state snapshot.sh committed (resume/,
# checked against the sidecars veil wrote), then continue the lane: bash continue.sh device|veil|cloud
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
WT=${WT:-$REPO/../budget}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" 319bf92
for state in "$HERE"/resume/*/; do
  [ -d "$state" ] || continue
  name=$(basename "$state"); run=$WT/runs/$name
  [ -d "$run" ] && continue
  kind=veil; [[ $name == fastnet_device_* ]] && kind=device; [[ $name == cloud_* ]] && kind=cloud
  mkdir -p "$run"
  cp "$state"/* "$run/"
  for f in config.yaml metrics.jsonl curve.jsonl; do
    [ ! -f "$HERE/$kind/$name/$f" ] || cp "$HERE/$kind/$name/$f" "$run/"
  done
  (cd "$run" && sha256sum -c --quiet ./*.pt.sha256)  # a damaged copy stops here
done
exec bash "$HERE/run.sh" "$@"
