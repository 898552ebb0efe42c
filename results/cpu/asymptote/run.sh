#!/usr/bin/env bash
# issue 22 §1: the default's exact recipe (staged) for 20 adversarial epochs, resumable.
cd /work/asym
export PYTHONPATH=/work/asym/src VEIL_QUIET=1
exec /work/main/.venv/bin/python -m veil train obfuscator --classifier runs/default-classifier.pt \
  --data ../shared/data/cifar10-jpeg75.zip --out runs/asymptote-staged20 --recipe staged \
  --epochs 20 --threads 1 --curve-every 20000 --resume
