#!/usr/bin/env bash
# The obfuscator recipe search on one GPU (benchmarks/grids/gpu_recipe.json): several
# `veil train obfuscator` settings side by side against the shipped fastnet classifier and a
# resnet18 trained first, each epoch logged as it ends.
#
#   bash benchmarks/gpu_recipe_search.sh [RESULTS_DIR]
#
# Needs `.carry/` as for benchmarks/paper_scale.sh plus .carry/clf/fastnet.pt (the default's
# classifier checkpoint with its .sha256). Environment: DEADLINE_S (default 300), WORKERS (6),
# PACK (a .tar.gz for the results without checkpoints), DATA_DIR, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-results/gpu/recipe_search}
. benchmarks/gpu_env.sh
export OMP_NUM_THREADS=2  # several trainings share the host's cores
"$python" -m veil data info --data "$data_dir/cifar10"
rc=0
"$python" benchmarks/obfuscator_recipe_search.py --grid "${GRID:-benchmarks/grids/gpu_recipe.json}" \
    --data "$data_dir/cifar10" --out "$results" --workers "${WORKERS:-6}" \
    --deadline-s "${DEADLINE_S:-300}" \
    --header "# Obfuscator recipe search on $("$python" -c 'import torch; import platform; print(torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor())')" \
    -- --device "${DEVICE:-cuda}" --precision bf16 || rc=$?
nvidia-smi --query-gpu=name,memory.used --format=csv || true
if [ -n "${PACK:-}" ]; then
    tar czf "$PACK" --exclude='*.pt' --exclude='*.pt.sha256' \
        -C "$(dirname "$results")" "$(basename "$results")"
fi
exit "$rc"
