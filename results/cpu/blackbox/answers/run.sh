#!/usr/bin/env bash
# issue 23 §1-§2: surrogates from the full black-box run's answers (results/cpu/blackbox/full)
# as a smaller query budget or a server answering less would have given them. Runs from its own
# worktree of 46c8637 (the benchmark that writes its table and figure); each point resumes in its
# folder. Needs the full run's queries.npz (its run.sh regenerates it in about 4 minutes). The
# 50,000-probability point is the full run's own surrogate (copied from ../full/resume/).
set -euo pipefail
PIN=46c8637
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WT=${WT:-$REPO/../ba}
QUERIES=${QUERIES:-$REPO/../bb/runs/blackbox-full/blackbox/queries.npz}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" $PIN
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
PY=$REPO/.venv/bin/python
mkdir -p runs/blackbox-answers/50000-probs
[ -f runs/default-classifier.pt ] || $PY -m veil.zoo.build --extract-classifier runs/default-classifier.pt
FULL=$REPO/results/cpu/blackbox/full/resume/surrogate
[ -f runs/blackbox-answers/50000-probs/model.pt ] || cp "$FULL"/* runs/blackbox-answers/50000-probs/
exec $PY benchmarks/blackbox_answers.py --queries "$QUERIES" --classifier runs/default-classifier.pt \
  --data ../shared/data/cifar10-jpeg75.zip --out runs/blackbox-answers --surrogate fastnet \
  --surrogate-epochs 10 --threads 1 --seed 0 \
  --points 50000:probs 2000:probs 10000:probs 2000:label 10000:label 50000:label 50000:topk:3
