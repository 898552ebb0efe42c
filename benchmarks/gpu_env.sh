# Sourced by the GPU scripts (paper_scale.sh, gpu_recipe_search.sh) from the repository root:
# unpacks the carried CIFAR-10 archive once into $data_dir, puts src/ and .carry/site/ on the path
# and prints the torch build. Sets data_dir and python (DATA_DIR, PYTHON override them).
data_dir=${DATA_DIR:-/tmp/veil-data}
python=${PYTHON:-python3}
if [ ! -d "$data_dir/cifar10/train" ]; then
    mkdir -p "$data_dir"
    tar xzf .carry/cifar10-jpeg75.tar.gz -C "$data_dir"
fi
export PYTHONPATH="$PWD/src:$PWD/.carry/site${PYTHONPATH:+:$PYTHONPATH}"
export VEIL_CACHE=${VEIL_CACHE:-/tmp/veil-cache} PYTHONUNBUFFERED=1
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
