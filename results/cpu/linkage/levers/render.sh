#!/usr/bin/env bash
# levers.{json,md,png}: every linkage point measured so far, side by side (benchmarks/linkage_levers.py)
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
L=results/cpu/linkage
.venv/bin/python benchmarks/linkage_levers.py --out $L/levers \
  --point "shipped default=$L/defaults/attacks.json,$L/reobfuscation/own/attacks.json#obf-fastnet-s0-lam1:results/cpu/asymptote/metrics.jsonl" \
  --point "default + send noise 0.1=$L/reobfuscation/own/attacks.json#obf-fastnet-s0-lam1+noise0.1" \
  --point "default + send noise 0.3=$L/reobfuscation/own/attacks.json#obf-fastnet-s0-lam1+noise0.3" \
  --point "ft-control=$L/levers/ft-control/attacks.json:$L/levers/ft-control/metrics.jsonl" \
  --point "ft-nofeat-link1=$L/levers/ft-nofeat-link1/attacks.json:$L/levers/ft-nofeat-link1/metrics.jsonl" \
  --point "randomised, noise std 1=$L/randomised/noise1/attacks.json:$L/randomised/noise1-model/metrics.jsonl" \
  --point "randomised, noise std 4=$L/randomised/noise4/attacks.json:$L/randomised/noise4-model/metrics.jsonl" \
  --point "derived, parent holder=$L/derived/away1/parent-holder/attacks.json:$L/derived/away1/metrics.jsonl" \
  --point "derived λa 2, parent holder=$L/derived/away2/parent-holder/attacks.json:$L/derived/away2/metrics.jsonl" \
  --point "derived λa 3, parent holder=$L/derived/away3/parent-holder/attacks.json:$L/derived/away3/metrics.jsonl" \
  --baselines $L/baselines/attacks.json --device-alone 0.8662
