#!/usr/bin/env bash
# issue 42 §2, the third lever: randomness per request. The shipped default, its sent images
# given fresh Gaussian noise on every request (std 0.02, 0.05, 0.1, before the 8-bit rule),
# scored by the frozen fastnet and attacked by the operator, a learned matcher that trains on a
# fresh noisy copy of every pair it sees (until flat or 3,000 s), and the co-trained
# deobfuscator; CIFAR-10 (JPEG-75), 1,000-photo gallery, seed 0, one thread. Post hoc: the
# obfuscator and the classifier never saw the noise in training (the first look; training with
# it is the next step if the curve says so). Resumable. Run from anywhere:
#   bash results/cpu/linkage/levers/send_noise.sh
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
PY=.venv/bin/python
mkdir -p runs
[ -f runs/default-classifier.pt ] || $PY -m veil.zoo.build --extract-classifier runs/default-classifier.pt
[ -f runs/default-obfuscator.pt ] || $PY -m veil.zoo.build \
  --extract-obfuscator runs/default-obfuscator.pt --classifier runs/default-classifier.pt
exec .venv/bin/veil attack --obfuscators runs/default-obfuscator.pt --send-noise 0.02 0.05 0.1 \
  --classifier runs/default-classifier.pt --attacks cotrained link_operator link_matcher \
  --budget hour --matcher-seconds 3000 --matcher-eval-every 10000 \
  --data ../shared/data/cifar10-jpeg75.zip --threads 1 \
  --out "${OUT:-results/cpu/linkage/levers/send-noise}" --resume --quiet
