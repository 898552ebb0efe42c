#!/usr/bin/env bash
# issue 42 §1: both linkage attacks (the operator's, no training; the learned matcher, until
# flat or $MATCHER_SECONDS (3,000) s of training) on an obfuscator checkpoint, scored with the shipped fastnet;
# gallery of 1,000 CIFAR-10 (JPEG-75) test photos (100 per class), seed 0, one thread.
# Resumable (--resume keeps the finished defenses). Run from anywhere:
#   bash results/cpu/linkage/run_defaults.sh [OBFUSCATOR.pt ...]
# With no argument it attacks the embedded default (extracted to runs/, fp32 of its fp16 weights).
# $EXTRA: further `veil attack` options, after these (a later --attacks replaces the one here).
set -euo pipefail
# shellcheck disable=SC2086  # $EXTRA is split into options on purpose
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
PY=.venv/bin/python
mkdir -p runs
[ -f runs/default-classifier.pt ] || $PY -m veil.zoo.build --extract-classifier runs/default-classifier.pt
[ -f runs/default-obfuscator.pt ] || $PY -m veil.zoo.build \
  --extract-obfuscator runs/default-obfuscator.pt --classifier runs/default-classifier.pt
OBFUSCATORS=("$@")
[ ${#OBFUSCATORS[@]} -gt 0 ] || OBFUSCATORS=(runs/default-obfuscator.pt)
exec .venv/bin/veil attack --obfuscators "${OBFUSCATORS[@]}" --classifier runs/default-classifier.pt \
  --attacks link_operator link_matcher --budget hour --matcher-seconds "${MATCHER_SECONDS:-3000}" \
  --matcher-eval-every 10000 \
  --data ../shared/data/cifar10-jpeg75.zip --threads 1 \
  --out "${OUT:-results/cpu/linkage/defaults}" --resume --quiet ${EXTRA:-}
