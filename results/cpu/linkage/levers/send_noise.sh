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
HERE=$(cd "$(dirname "$0")" && pwd)
EXTRA="--send-noise 0.02 0.05 0.1 --attacks cotrained link_operator link_matcher" \
  OUT="${OUT:-results/cpu/linkage/levers/send-noise}" exec bash "$HERE/../run_defaults.sh"
