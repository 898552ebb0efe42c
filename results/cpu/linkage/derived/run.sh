#!/usr/bin/env bash
# issue 51 §3: a user's own obfuscator, derived from the shipped default. One adversarial epoch
# of fine-tuning (staged recipe, lr 5e-4, λ = 1 from the first step, --set init=) with the term
# that keeps the parent's holder from linking by re-obfuscation (lam_away = $LAM_AWAY), seeded
# with the user's own seed ($SEED), one thread, against the shipped fastnet, CIFAR-10
# (JPEG-75). Then every linkage attack an attacker who holds the PARENT's weights (not the
# derived ones) has: re-obfuscation with the parent (fitting it is the same attack: it is
# deterministic), a matcher trained
# on the parent's pairs until flat or 1,800 s, and the operator's (no weights); the co-trained
# redraw beside them. Gallery: 1,000 test photos. Resumable: rerun it. From its own worktree.
set -euo pipefail
PIN=${PIN:?set PIN to the commit to run}
LAM_AWAY=${LAM_AWAY:-1}
SEED=${SEED:-20261207}
LANE=derived
source "$(dirname "$0")/../lane-setup.sh"
RUN=runs/away$LAM_AWAY
[ -f "$RUN/model.pt" ] || "$PY" -m veil train obfuscator --classifier runs/default-classifier.pt \
  --data "$DATA" --out "$RUN" --recipe staged --epochs 1 --lr 5e-4 --threads 1 --seed "$SEED" \
  --set init=runs/default-obfuscator.pt --set lr_deobfuscator=5e-4 --set lam_ramp_epochs=0 \
  --set lam_away="$LAM_AWAY" --set curve_every=10000 --resume
mkdir -p "$HERE/away$LAM_AWAY"
cp "$RUN"/{config.yaml,metrics.jsonl,curve.jsonl} "$HERE/away$LAM_AWAY/" 2>/dev/null || true
sed -i "s|$(realpath "$REPO/../shared")/|../shared/|g; s|$WT/|../derived/|g" "$HERE/away$LAM_AWAY/config.yaml"
"$PY" -m veil attack --obfuscators "$RUN/model.pt" --classifier runs/default-classifier.pt \
  --attacker-weights runs/default-obfuscator.pt \
  --attacks link_operator link_reobfuscate link_matcher cotrained --budget hour \
  --matcher-seconds 1800 --matcher-eval-every 10000 --data "$DATA" --threads 1 \
  --out "$HERE/away$LAM_AWAY/parent-holder" --resume --quiet
