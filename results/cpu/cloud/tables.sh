#!/usr/bin/env bash
# issue 49 §2: Table 1 in the paper's regime. `veil evaluate` over the strong clouds beside the
# shipped fastnet: each obfuscator against the classifier it was trained for (plain, obfuscated
# 8-bit, overhead) and against every other (transfer), the clouds also as served (six views,
# the zoo entries), the device-alone classifier of the obfuscator's budget for the offloading
# gain. CIFAR-10 (JPEG-75), 10,000 test images, seed 0, one thread; into tables/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
cd "$REPO"
PY=.venv/bin/python
DATA=$(realpath "$REPO/../shared/data/cifar10-jpeg75.zip")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$PY" -m veil.zoo.build --extract-classifier "$T/fastnet.pt"
"$PY" -m veil.zoo.build --extract-obfuscator "$T/default.pt" --classifier "$T/fastnet.pt"
"$PY" -m veil.zoo.build --name cloudnet_s --extract-classifier "$T/cloudnet_s_tta.pt"
classifiers=("$HERE/cloudnet_s/model.pt" "$T/cloudnet_s_tta.pt" "$T/fastnet.pt")
obfuscators=("$HERE/veil-cloudnet_s/model.pt" "$T/default.pt")
[ ! -f "$HERE/cloudnet_m/model.pt" ] || classifiers+=("$HERE/cloudnet_m/model.pt")
VEIL_QUIET=1 "$PY" -m veil evaluate --classifiers "${classifiers[@]}" \
  --obfuscators "${obfuscators[@]}" \
  --device-alone results/cpu/device_budget/device/fastnet_device_a100/model.pt \
  --data "$DATA" --threads 1 --out "$HERE/tables"
