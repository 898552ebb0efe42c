# Sourced by the linkage lanes (levers/finetune.sh, randomised/run.sh, derived/run.sh) after they
# set PIN (the commit they run) and LANE (their worktree's name): a git worktree of PIN beside the
# repository, entered; PY, DATA (CIFAR-10 (JPEG-75) from ../shared); the shipped default's
# classifier and obfuscator as files in runs/, which every lane fine-tunes or attacks.
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel)
WT=${WT:-$REPO/../$LANE}
[ -d "$WT" ] || git -C "$REPO" worktree add --detach "$WT" "$PIN"
cd "$WT"
export PYTHONPATH=$WT/src VEIL_QUIET=1
PY="$REPO/.venv/bin/python"
DATA=$(realpath "$REPO/../shared/data/cifar10-jpeg75.zip")
mkdir -p runs
[ -f runs/default-classifier.pt ] || "$PY" -m veil.zoo.build --extract-classifier runs/default-classifier.pt
[ -f runs/default-obfuscator.pt ] || "$PY" -m veil.zoo.build \
  --extract-obfuscator runs/default-obfuscator.pt --classifier runs/default-classifier.pt
