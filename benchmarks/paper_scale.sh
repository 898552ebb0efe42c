#!/usr/bin/env bash
# Paper scale on one GPU: the five classifiers, their obfuscators, Tables 1-3 and the
# fresh-decoder attack with `veil reproduce --scale paper`, sized to end within a time budget.
#
#   bash benchmarks/paper_scale.sh [RESULTS_DIR] [more `veil reproduce` options, e.g. --resume]
#
# Run from anywhere inside the repository on the GPU machine, with `.carry/` carried there:
#   .carry/cifar10-jpeg75.tar.gz  CIFAR-10 (JPEG-75) as a solid archive, from the shared zip:
#                                 unzip -q ../shared/data/cifar10-jpeg75.zip -d D &&
#                                 tar czf .carry/cifar10-jpeg75.tar.gz -C D cifar10
#   .carry/site/                  pure-Python packages the GPU image lacks (pytorch_msssim):
#                                 cp -r .venv/lib/python3*/site-packages/pytorch_msssim .carry/site/
# Environment (all optional):
#   BUDGET_MINUTES  time budget of `veil reproduce` (default 9)
#   HARD_LIMIT_S    interrupt the run after this many seconds (default 570, under a 10-minute
#                   command limit); an interrupted run keeps its finished phases (use --resume)
#   DATA_DIR        where the archive is unpacked (default /tmp/veil-data)
#   PACK            write the results without checkpoints to this .tar.gz (e.g. $OUT/paper.tar.gz)
#   PYTHON          interpreter with torch (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-results/paper}
shift || true
. benchmarks/gpu_env.sh

rc=0
timeout -s INT "${HARD_LIMIT_S:-570}" \
    "$python" -m veil reproduce --scale paper --data "$data_dir/cifar10" --out "$results" \
    --budget-minutes "${BUDGET_MINUTES:-9}" "$@" || rc=$?
if [ -n "${PACK:-}" ] && [ -d "$results" ]; then
    tar czf "$PACK" --exclude='*.pt' --exclude='*.pt.sha256' \
        -C "$(dirname "$results")" "$(basename "$results")"
    echo "packed $results into $PACK"
fi
exit "$rc"
