#!/usr/bin/env bash
# compute-sanitizer over the GPU test programs, at sizes it can finish in one device call
# (~8 minutes on an H100/H200): memcheck on every GPU program (GoogLeNet at batch 4 at most,
# never test_gpu_b128), racecheck and synccheck on the programs of hand-written kernels
# (shared-memory reductions, warp shuffles), initcheck on those whose buffers the tests fill
# (the nets' cuDNN algorithm search reads scratch it never wrote, by design: initcheck would
# list that). One log per run under OUT_DIR, a summary (summary.txt) with each run's error
# count, the program's exit status and its time.
#
# Usage: benchmarks/sanitize_gpu.sh OUT_DIR [BIN_DIR]
#   BIN_DIR: where the test programs are (default $INCEPT_TEST_BIN_DIR, else build/bin; a
#   program not there is looked up on PATH).
#   compute-sanitizer: $COMPUTE_SANITIZER, else on PATH, else /usr/local/cuda*/bin (newest).
#   SANITIZE_BUDGET_S (default 420): runs that would start after this many seconds are listed
#   as "not run", and a run is stopped 30 s after it (the whole script stays under ~7.5 min);
#   SANITIZE_RUN_TIMEOUT_S (default 240) bounds each run.
#   SANITIZE_RUNS (default: all): which runs of the list below, by number from 1, e.g.
#   "11-17" or "3,5,11-13" (to finish the runs an earlier call's budget left out).
# Exit status: 0 when every run finished with 0 sanitizer errors and its tests passed, 1 when
# not, 2 when compute-sanitizer or OUT_DIR is missing.
set -uo pipefail

if (($# < 1)); then
  echo "usage: $0 OUT_DIR [BIN_DIR]" >&2
  exit 2
fi
out=$1
bin=${2:-${INCEPT_TEST_BIN_DIR:-build/bin}}
budget=${SANITIZE_BUDGET_S:-420}
run_timeout=${SANITIZE_RUN_TIMEOUT_S:-240}

find_sanitizer() {
  if [[ -n ${COMPUTE_SANITIZER:-} ]]; then
    [[ -x $COMPUTE_SANITIZER ]] && { echo "$COMPUTE_SANITIZER"; return 0; }
    echo "COMPUTE_SANITIZER=$COMPUTE_SANITIZER is not an executable" >&2
    return 1
  fi
  command -v compute-sanitizer 2>/dev/null && return 0
  local c
  while read -r c; do
    [[ -x $c ]] && { echo "$c"; return 0; }
  done < <(printf '%s\n' /usr/local/cuda*/bin/compute-sanitizer /usr/local/cuda*/compute-sanitizer/compute-sanitizer |
    sort -rV)
  return 1
}
if ! cs=$(find_sanitizer); then
  echo "sanitize_gpu: compute-sanitizer not found (not on PATH, not under /usr/local/cuda*/bin)." >&2
  echo "  It ships with the CUDA toolkit (Debian/Ubuntu: the cuda-sanitizer-<version> package);" >&2
  echo "  put it on PATH or set COMPUTE_SANITIZER=/path/to/compute-sanitizer." >&2
  exit 2
fi
mkdir -p "$out" || exit 2

program_path() {
  if [[ -x $bin/$1 ]]; then
    echo "$bin/$1"
  else
    command -v "$1" 2>/dev/null
  fi
}

# tool  program  gtest filter ('*': all)  -- ordered so the cheap runs come first.
runs=(
  "memcheck test_gpu_smoke *"
  "memcheck test_gpu_kernels *"
  "memcheck test_gpu_nhwc *"
  "memcheck test_gpu_softmax *"
  "memcheck test_gpu_conv *"
  "memcheck test_gpu_net GpuNet.LeNet*:GpuNet.GraphReplay*:GpuNet.SameSeedSameBits:GpuNet.BlobWrites*"
  "memcheck test_gpu_net GpuNet.GoogLeNetBatch4MatchesCpuChannelsLast*"
  "racecheck test_gpu_smoke GpuSmoke.HandWritten*:GpuSmoke.SumRows*"
  "racecheck test_gpu_kernels *"
  "racecheck test_gpu_nhwc *"
  "racecheck test_gpu_softmax GpuSoftmax.MatchesTheCpuReference"
  "synccheck test_gpu_kernels *"
  "synccheck test_gpu_nhwc *"
  "initcheck test_gpu_kernels *"
  "initcheck test_gpu_nhwc *"
  "memcheck test_gpu_net GpuNet.GoogLeNetBatch4MatchesCpuFp32:GpuNet.GoogLeNetBatch4MatchesCpuBf16"
  "memcheck test_gpu_trainer GpuTrainerTest.GraphEqualsEagerAndResumeIsBitwise"
  "memcheck test_gpu_net GpuNet.BranchLanesGiveTheBitsOfOneStream"
)

export INCEPT_REQUIRE_GPU=1
summary=$out/summary.txt
{
  echo "compute-sanitizer: $cs ($("$cs" --version 2>/dev/null | grep -i version | head -1))"
  echo "programs: $bin (else PATH); GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  printf '%-10s %-18s %-60s %8s %6s %5s %s\n' tool program filter errors rc s tests
} >"$summary"

# selected N: is run N in SANITIZE_RUNS (all when unset)?
selected() {
  [[ -z ${SANITIZE_RUNS:-} ]] && return 0
  local part lo hi
  for part in ${SANITIZE_RUNS//,/ }; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
      lo=${BASH_REMATCH[1]} hi=${BASH_REMATCH[2]}
    elif [[ $part =~ ^[0-9]+$ ]]; then
      lo=$part hi=$part
    else
      echo "sanitize_gpu: SANITIZE_RUNS: '$part' is not N or N-M" >&2
      exit 2
    fi
    ((10#$1 >= 10#$lo && 10#$1 <= 10#$hi)) && return 0
  done
  return 1
}

start=$(date +%s)
fail=0
n=0
for r in "${runs[@]}"; do
  read -r tool prog filter <<<"$r"
  n=$((n + 1))
  selected $n || continue
  log=$out/$(printf '%02d' $n).$tool.$prog.log
  elapsed=$(($(date +%s) - start))
  path=$(program_path "$prog")
  if [[ -z $path ]]; then
    printf '%-10s %-18s %-60s %8s %6s %5s %s\n' "$tool" "$prog" "$filter" "-" "-" "-" "program not found" >>"$summary"
    fail=1
    continue
  fi
  if ((elapsed >= budget)); then
    printf '%-10s %-18s %-60s %8s %6s %5s %s\n' "$tool" "$prog" "$filter" "-" "-" "-" "not run (budget ${budget}s spent)" >>"$summary"
    fail=1
    continue
  fi
  limit=$((budget - elapsed + 30))
  ((limit > run_timeout)) && limit=$run_timeout
  t0=$(date +%s)
  timeout --kill-after=20 "$limit" "$cs" --tool "$tool" --print-limit 100 \
    "$path" --gtest_color=no --gtest_filter="$filter" >"$log" 2>&1
  rc=$?
  secs=$(($(date +%s) - t0))
  if [[ $tool == racecheck ]]; then
    # "RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)"
    errors=$(grep -oE 'RACECHECK SUMMARY: [0-9]+ hazards? displayed \([0-9]+ errors?, [0-9]+ warnings?\)' "$log" |
      tail -1 | sed -E 's/.*\(([0-9]+) errors?, ([0-9]+) warnings?\)/\1+\2w/')
  else
    errors=$(grep -oE 'ERROR SUMMARY: [0-9]+ errors?' "$log" | tail -1 | grep -oE '[0-9]+')
  fi
  [[ -z $errors ]] && errors="?"
  passed=$(grep -cE '^\[       OK \] .* \([0-9]+ ms\)' "$log")
  failed=$(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)' "$log")
  note="$passed passed, $failed failed"
  ((rc == 124 || rc == 137)) && note="$note, TIMED OUT after ${limit}s"
  printf '%-10s %-18s %-60s %8s %6s %5s %s\n' "$tool" "$prog" "$filter" "$errors" "$rc" "$secs" "$note" >>"$summary"
  if [[ $errors != 0 && $errors != 0+0w ]] || ((rc != 0)); then fail=1; fi
done
echo "total $(($(date +%s) - start)) s; logs in $out" >>"$summary"
cat "$summary"
exit $fail
