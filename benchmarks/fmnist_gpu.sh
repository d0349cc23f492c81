#!/usr/bin/env bash
# The training job's evidence run on a GPU machine, on Debian's Fashion-MNIST (70,000 images):
# the images written as a class folder, served by Python's http.server on 127.0.0.1, ingested by
# imagenet_ingest with DIGITS' defaults (256x256 colour JPEG, 25 % validation; fmnist_dataset.sh), then
#   - the loader alone from the real LMDB (bench_loader: img/s per thread count),
#   - the training step fed by the loader against the synthetic step (bench_train_step --dataset),
#   - DIGITS' GoogLeNet trained by train_googlenet for EPOCHS epochs with DIGITS' default solver
#     (lr 0.01, step 33 %, gamma 0.1) at batch 128, once per entry of RUNS: "bf16", "fp32",
#     "bf16:0,1" for data parallel on GPUs 0 and 1, "fp32r" (fp32 with every gradient rounded
#     to bf16 before the update, --round-grads-bf16: what storing gradients in bf16 costs, alone)
#     or "fp32s" (fp32 with --fp32-math strict: FMA GEMMs, against "fp32"'s 3xTF32 on sm_80+).
#     PARALLEL=1 runs the entries at the same time (give each its own GPUs, e.g. "fp32:0 fp32r:1").
# The programs come from PATH (source .devpack/env.sh); the dataset is kept in WORK between runs.
# Usage: benchmarks/fmnist_gpu.sh OUT_DIR   (env: RUNS="bf16 fp32", EPOCHS=10, WORK=/tmp/fmnist,
#        STEP_BENCH=1, LOADER_BENCH=1, PER_CLASS=100000 images per class and split, PARALLEL=0,
#        TRAIN_FLAGS="" more train_googlenet flags, e.g. --deterministic)
set -uo pipefail
out=$1
work=${WORK:-/tmp/fmnist}
epochs=${EPOCHS:-10}
mkdir -p "$out" "$work"
log=$out/bench.log
say() { echo "$*" | tee -a "$log"; }

"$(dirname "$0")/fmnist_dataset.sh" "$work" "${PER_CLASS:-100000}" "$out/ingest.log" | tee -a "$log"
((PIPESTATUS[0] == 0)) || exit 1

if [[ ${LOADER_BENCH:-1} == 1 ]]; then
  bench_loader --db "$work/ds/train_db" --batch 128 --threads 1,2,4,8,15 --seconds 3 >>"$log" 2>&1
fi
if [[ ${STEP_BENCH:-1} == 1 ]]; then
  bench_train_step --dtype bf16 fp32 --dataset "$work/ds" --steps 100 >>"$log" 2>&1
  grep -A8 "^mode" "$log" | tail -9
fi

one_run() {
  local run=$1 precision=${1%%:*} gpus=0 flags=()
  [[ $run == *:* ]] && gpus=${run#*:}
  case $precision in
    fp32r) precision=fp32 flags=(--round-grads-bf16) ;;
    fp32s) precision=fp32 flags=(--fp32-math strict) ;;
  esac
  local name=${run%%:*}_g${gpus//,/}
  rm -rf "$work/job_$name"
  local t0 t1 rc
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  train_googlenet --dataset "$work/ds" --output "$work/job_$name" --gpus "$gpus" --epochs "$epochs" \
    --batch-size 128 --precision "$precision" --seed 1 "${flags[@]}" ${TRAIN_FLAGS:-} >"$out/train_$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  {
    echo "train $name rc=$rc wall $(awk "BEGIN{print $t1 - $t0}") s"
    grep -E "^final|^time|^snapshot" "$out/train_$name.log"
    # steady training rate: the median img/s of the progress lines
    grep -o '[0-9]* img/s' "$out/train_$name.log" | awk '{print $1}' | sort -n |
      awk '{a[NR]=$1} END {if (NR) print "median progress-line img/s", a[int((NR+1)/2)], "over", NR, "lines"}'
  } >"$out/summary_$name.txt"
  cp "$work/job_$name/report.png" "$out/report_$name.png" 2>/dev/null
}

read -r -a runs <<<"${RUNS:-bf16 fp32}"
if [[ ${PARALLEL:-0} == 1 ]]; then
  for run in "${runs[@]}"; do one_run "$run" & done
  wait
else
  for run in "${runs[@]}"; do one_run "$run"; done
fi
for run in "${runs[@]}"; do
  g=0
  [[ $run == *:* ]] && g=${run#*:}
  tee -a "$log" <"$out/summary_${run%%:*}_g${g//,/}.txt"
done
tar -czf "$out/jobs.tgz" -C "$work" $(cd "$work" && ls -d job_*/{metrics.csv,job.json,train.log,report.html} 2>/dev/null)
