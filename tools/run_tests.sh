#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs and builds what it needs (tools/setup.sh),
# then runs every CTest test. GPU tests skip with a printed reason on machines without a GPU.
# Usage: tools/run_tests.sh [ctest args...]   e.g. tools/run_tests.sh -L cpu
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
log=$(mktemp)
set +e
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# A run in which nothing passed proves nothing: fail it.
passed=$(grep -Ec "Test +#[0-9]+: .* Passed" "$log" || true)
echo "run_tests: $passed test programs passed"
if ((passed == 0 && rc == 0)); then
  echo "run_tests: no test ran" >&2
  rc=1
fi
rm -f "$log"
exit "$rc"
