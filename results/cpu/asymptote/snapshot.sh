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
# the curve as far as the checkpoint: the code at 45c4e69 does not resume the curve's counters,
# so what a resumed run appends starts again from 0 (README: add the checkpoint's offsets)
python3 - "$HERE" <<'PY'
import json, sys, pathlib
here = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for l in (here / "metrics.jsonl").read_text().splitlines() if l.strip()]
wall = rows[-1]["wall_s"] if rows else float("inf")
curve = [l for l in (here / "curve.jsonl").read_text().splitlines() if l.strip()]
kept = [l for l in curve if json.loads(l)["train_s"] <= wall + 1.0]
(here / "curve.jsonl").write_text("".join(l + "\n" for l in kept))
print(f"curve: {len(kept)} of {len(curve)} points, up to {wall} s of training")
PY
ls -la "$HERE/resume"
