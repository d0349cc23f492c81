#!/usr/bin/env bash
# The whole test suite from a fresh clone: installs and builds what it needs (tools/setup.sh),
# then runs every CTest test. A test program exits 77 when every test it ran was skipped (GPU
# tests without a GPU, a case whose tool is missing); CTest reports it as "Skipped" and this
# script lists each skipped test with its reason. Set INCEPT_REQUIRE_GPU=1 on a GPU host to
# turn every GPU skip into a failure.
# Usage: tools/run_tests.sh [ctest args...]   e.g. tools/run_tests.sh -L cpu
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
log=$(mktemp)
set +e
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -Ec "Test +#[0-9]+: .* Passed" "$log" || true)
# "The following tests did not run:" lists "<n> - <name> (Skipped|Disabled|...)"; the reasons
# are the "incept: skipped <case>: <why>" lines in that test's section of CTest's LastTest.log.
mapfile -t not_run < <(awk '/^The following tests did not run:/ { on = 1; next }
  on && /^[[:space:]]*[0-9]+ - .* [(][A-Za-z ]+[)]$/ {
    sub(/^[[:space:]]*[0-9]+ - /, ""); match($0, / [(][A-Za-z ]+[)]$/)
    print substr($0, 1, RSTART - 1) "|" substr($0, RSTART + 2, RLENGTH - 3); next }
  { on = 0 }' "$log")
for entry in "${not_run[@]}"; do
  name=${entry%|*}
  echo "run_tests: ${entry#*|}: $name"
  awk -v name="$name" '
    /^[0-9]+\/[0-9]+ Test: / { sub(/^[0-9]+\/[0-9]+ Test: /, ""); inside = ($0 == name); next }
    inside && /^incept: skipped / { sub(/^incept: skipped /, ""); print "run_tests:     " $0; found = 1 }
    END { if (!found) print "run_tests:     (no reason printed)" }' build/Testing/Temporary/LastTest.log
done
failed=$(awk '/^The following tests FAILED:/ { on = 1; next } on && /^[[:space:]]*[0-9]+ - / { n++; next }
  { on = 0 } END { print n + 0 }' "$log")
# A run in which nothing passed proves nothing: fail it.
if ((passed == 0 && rc == 0)); then
  echo "run_tests: no test passed" >&2
  rc=1
fi
echo "run_tests: $passed passed, $failed failed, ${#not_run[@]} skipped"
rm -f "$log"
exit "$rc"
