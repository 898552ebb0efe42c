#!/usr/bin/env bash
# issue 51 §3, the population attack: other users' derived obfuscators (siblings: `veil derive`
# from the same shipped default, λa = 1, one epoch, each with its own seed in
# $SEEDS) are all an attacker may hold besides the parent. Against one derived obfuscator
# ($TARGET, whose weights the attacker does not hold: $TARGET/model/model.pt), re-obfuscation
# with each held one and with the nearest over all, and a matcher trained on pairs drawn from all
# of them (parent and siblings) until flat or 1,800 s; gallery of 1,000 test photos, one thread,
# CIFAR-10 (JPEG-75), against the shipped fastnet. Resumable: rerun it. From its own worktree.
set -euo pipefail
PIN=${PIN:?set PIN to the commit to run}
TARGET=${TARGET:?set TARGET to the derived run attacked, e.g. away2}
SEEDS=${SEEDS:-1 2}
LANE=siblings
source "$(dirname "$0")/../lane-setup.sh"
held=(runs/default-obfuscator.pt)
for seed in $SEEDS; do
  [ -f "runs/sibling$seed/model.pt" ] || "$PY" -m veil derive --parent runs/default-obfuscator.pt \
    --classifier runs/default-classifier.pt --data "$DATA" --out "runs/sibling$seed" \
    --seed "$seed" --lam-away 1 --threads 1 --resume --quiet
  held+=("runs/sibling$seed/model.pt")
done
"$PY" -m veil attack --obfuscators "$HERE/$TARGET/model/model.pt" \
  --classifier runs/default-classifier.pt --attacker-weights "${held[@]}" \
  --attacks link_reobfuscate link_matcher --budget hour --matcher-seconds 1800 \
  --matcher-eval-every 10000 --data "$DATA" --threads 1 \
  --out "$HERE/$TARGET/population-holder" --resume --quiet
