#!/usr/bin/env bash
# The CPU-scale evaluation: Tables 1-3, attacks, baselines and the λ trade-off, into results/cpu/.
#
#   benchmarks/cpu_scale_eval.sh               # full CPU scale: 4-5 h on 2 cores
#   SMOKE=1 OUT=/tmp/veil-smoke benchmarks/cpu_scale_eval.sh   # minutes: checks the pipeline
#   HOUR=1 CLF0=... OBF0=... benchmarks/cpu_scale_eval.sh      # about an hour: 3-epoch extra
#       classifiers, 1-epoch obfuscators on 10,000 images, the `cpu-hour` trade-off preset
#
# Models (finished runs are reused, interrupted ones resumed):
#   fastnet seed 0   $CLF0 (default runs/default-classifier/model.pt; 10 epochs, trained here if
#                    missing; `python -m veil.zoo.build --extract-classifier PT` gives the shipped one)
#   fastnet seed 1   5 epochs                     -> runs/cpu-eval/fastnet-s1
#   resnet9_narrow   5 epochs                     -> runs/cpu-eval/resnet9_narrow-s0
#   obfuscators      staged recipe, λ = 1: $OBF0 for fastnet seed 0 is the shipped default's run
#                    (8 encoder + 6 adversarial epochs, ~55 min; trained with `veil train
#                    obfuscator`'s defaults if missing); the two others on half that schedule
#                    (4 + 3 epochs, ~28 min each) so the whole evaluation fits ~2.5 h, and two
#                    for the ensemble of those two (--ensemble-mode cycle, same schedule; mean,
#                    4 + 2 epochs)
# Then:
#   results/cpu/tables    veil evaluate: Tables 1-3 (transfer matrix: 4 obfuscators x 3 classifiers,
#                         fastnet seed 0 held out of the ensemble) on the 10,000 test images
#   results/cpu/tradeoff  (TRADEOFF=1 or SMOKE=1 only; ~3 h) the older quick sweep: benchmarks/tradeoff.py
#                         against fastnet seed 0, λ trained 1 epoch on 10,000 images. The real
#                         operating points are benchmarks/lambda_sweep.py's results/cpu/lambda_sweep
# Expected time on 2 cores: classifiers ~25 min, the three obfuscators ~85 min, tables ~15 min.
# SMOKE=1: about 10 min.
# Environment: DATA (default ../shared/data/cifar10-jpeg75.zip), OUT (default results/cpu),
# RUNS (default runs/cpu-eval), THREADS (default 2), CLF0, OBF0, SMOKE=1 for tiny budgets.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/cifar10-jpeg75.zip}
OUT=${OUT:-results/cpu}
RUNS=${RUNS:-runs/cpu-eval}
THREADS=${THREADS:-2}
export VEIL_QUIET=${VEIL_QUIET:-1}
veil() { "$PY" -m veil "$@"; }

if [[ -n "${SMOKE:-}" ]]; then
  CLF_EPOCHS=1; CLF_SUBSET=(--set train_subset=2000 --set test_subset=500)
  OBF_EPOCHS=1; OBF_SUBSET=(--set train_subset=256 --set test_subset=200)
  TABLES=(--test-subset 200)
  SWEEP=(--preset smoke); TRADEOFF=1
  CLF0=$RUNS/fastnet-s0/model.pt; OBF0=$RUNS/obf-fastnet-s0/model.pt
  CLF0_EPOCHS=1; OBF0_EPOCHS=1; OBF0_ARGS=("${OBF_SUBSET[@]}")
elif [[ -n "${HOUR:-}" ]]; then
  CLF_EPOCHS=3; CLF_SUBSET=()
  OBF_EPOCHS=1; OBF_SUBSET=(--set train_subset=10000 --batch-size 64 --set lam_ramp_epochs=0.3)
  TABLES=()
  SWEEP=(--preset cpu-hour)
  CLF0=${CLF0:-runs/default-classifier/model.pt}; OBF0=${OBF0:-runs/default-obfuscator/model.pt}
  CLF0_EPOCHS=15; OBF0_EPOCHS=2; OBF0_ARGS=("${OBF_SUBSET[@]}")
else
  CLF_EPOCHS=5; CLF_SUBSET=()
  OBF_EPOCHS=3; OBF_SUBSET=(--recipe staged --set warm_start=encoder:4)
  TABLES=()
  SWEEP=(--preset cpu)
  CLF0=${CLF0:-runs/default-classifier/model.pt}; OBF0=${OBF0:-runs/default-obfuscator/model.pt}
  CLF0_EPOCHS=10; OBF0_EPOCHS=6; OBF0_ARGS=(--recipe staged)
fi

# train_classifier OUT MODEL SEED EPOCHS: train unless OUT/model.pt exists; resume a killed run
train_classifier() {
  local out=$1 model=$2 seed=$3 epochs=$4
  [[ -f $out/model.pt ]] && { echo "reusing $out/model.pt"; return; }
  local resume=(); [[ -f $out/last.pt ]] && resume=(--resume)
  echo "training $model (seed $seed, $epochs epochs) into $out"
  veil train classifier --model "$model" --seed "$seed" --epochs "$epochs" --data "$DATA" \
    --out "$out" --threads "$THREADS" "${CLF_SUBSET[@]}" "${resume[@]}" --quiet
}

# train_obfuscator OUT CLASSIFIER EPOCHS [OPTIONS...]
train_obfuscator() {
  local out=$1 classifier=$2 epochs=$3; shift 3
  [[ -f $out/model.pt ]] && { echo "reusing $out/model.pt"; return; }
  local resume=(); [[ -f $out/last.pt ]] && resume=(--resume)
  echo "training an obfuscator for $classifier ($epochs epochs) into $out"
  veil train obfuscator --classifier "$classifier" --epochs "$epochs" --data "$DATA" \
    --out "$out" --threads "$THREADS" "$@" "${resume[@]}" --quiet
}

start=$SECONDS
train_classifier "$(dirname "$CLF0")" fastnet 0 "$CLF0_EPOCHS"
train_classifier "$RUNS/fastnet-s1" fastnet 1 "$CLF_EPOCHS"
train_classifier "$RUNS/resnet9_narrow-s0" resnet9_narrow 0 "$CLF_EPOCHS"
train_obfuscator "$(dirname "$OBF0")" "$CLF0" "$OBF0_EPOCHS" "${OBF0_ARGS[@]}"
train_obfuscator "$RUNS/obf-fastnet-s1" "$RUNS/fastnet-s1/model.pt" "$OBF_EPOCHS" "${OBF_SUBSET[@]}"
train_obfuscator "$RUNS/obf-resnet9_narrow-s0" "$RUNS/resnet9_narrow-s0/model.pt" "$OBF_EPOCHS" \
  "${OBF_SUBSET[@]}"
# obfuscators for the ensemble of the two others; fastnet seed 0 is in no ensemble: the
# held-out classifier of Table 3. cycle: one member per step (the cost of a single obfuscator);
# mean: both members in every step, one adversarial epoch fewer to stay near that cost
train_obfuscator "$RUNS/obf-ensemble" "$RUNS/fastnet-s1/model.pt" "$OBF_EPOCHS" \
  --classifier "$RUNS/resnet9_narrow-s0/model.pt" --ensemble-mode cycle "${OBF_SUBSET[@]}"
train_obfuscator "$RUNS/obf-ensemble-mean" "$RUNS/fastnet-s1/model.pt" \
  "$(( OBF_EPOCHS > 1 ? OBF_EPOCHS - 1 : 1 ))" \
  --classifier "$RUNS/resnet9_narrow-s0/model.pt" --ensemble-mode mean "${OBF_SUBSET[@]}"
echo "models ready after $((SECONDS - start)) s"

veil evaluate --classifiers "$CLF0" "$RUNS/fastnet-s1/model.pt" \
  "$RUNS/resnet9_narrow-s0/model.pt" \
  --obfuscators "$OBF0" "$RUNS/obf-fastnet-s1/model.pt" "$RUNS/obf-resnet9_narrow-s0/model.pt" \
  "$RUNS/obf-ensemble/model.pt" "$RUNS/obf-ensemble-mean/model.pt" \
  --data "$DATA" --out "$OUT/tables" --threads "$THREADS" "${TABLES[@]}" --quiet > /dev/null
echo "tables written to $OUT/tables after $((SECONDS - start)) s"

if [[ -z "${TRADEOFF:-}" ]]; then
  echo "done in $((SECONDS - start)) s: $OUT/tables/tables.md"
  exit 0
fi
"$PY" benchmarks/tradeoff.py --classifier "$CLF0" --data "$DATA" --out "$OUT/tradeoff" \
  "${SWEEP[@]}" --threads "$THREADS" -- --obfuscators "$OBF0"
echo "done in $((SECONDS - start)) s: $OUT/tables/tables.md, $OUT/tradeoff/attacks.md"
