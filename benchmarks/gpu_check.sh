#!/usr/bin/env bash
# The GPU test programs on a GPU machine, each bounded in time, with INCEPT_REQUIRE_GPU=1 so a
# missing GPU fails instead of skipping; one summary line per program, logs under LOG_DIR.
# Usage: benchmarks/gpu_check.sh BIN_DIR LOG_DIR [program...]   (default: every test_gpu_* in BIN_DIR)
set -uo pipefail
bin=$1 logs=$2
shift 2
mkdir -p "$logs"
progs=("$@")
if ((${#progs[@]} == 0)); then
  for p in "$bin"/test_gpu_*; do progs+=("$(basename "$p")"); done
fi
export INCEPT_REQUIRE_GPU=1
fail=0
for t in "${progs[@]}"; do
  start=$(date +%s)
  timeout "${GPU_CHECK_TIMEOUT:-300}" "$bin/$t" --gtest_color=no >"$logs/$t.log" 2>&1
  rc=$?
  ok=$(grep -c '^\[       OK ' "$logs/$t.log")
  bad=$(grep -c '^\[  FAILED  \] [A-Za-z]' "$logs/$t.log")
  printf '%-22s rc=%-3d %4ds  %3d passed  %3d failed\n' "$t" "$rc" $(($(date +%s) - start)) "$ok" "$bad"
  ((rc != 0)) && { fail=1; grep -E '^\[  FAILED  \]|Failure|error' "$logs/$t.log" | head -8; }
done
exit $fail
