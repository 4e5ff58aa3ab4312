#!/usr/bin/env bash
# The whole test suite, as in the README quick start and CI: installs what it
# needs (idempotently), builds, lints, runs every test file, and ends with
# the line "N passed, N failed". Exits non-zero on any failure.
# Run one file: scripts/test.sh dist/test/uffd/engine.test.js
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: run as root (userfaultfd features, CRIU, namespaces and the RDMA VM need it)" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
fail() { echo "setup failed: $*" >&2; echo "0 passed, 1 failed"; exit 1; }
scripts/setup-host.sh || fail "scripts/setup-host.sh"
scripts/install.sh || fail "scripts/install.sh"

log=$(mktemp /tmp/sos-test.XXXXXX)
files=("$@")
vm_log=""
if [ ${#files[@]} -eq 0 ]; then
  mapfile -t files < <(find dist/test -name '*.test.js' ! -path dist/test/rdma/softroce.test.js | sort)
  # The soft-RoCE VM (one test file, ~20 min under TCG, most of a core) runs from the start (lint
  # included) beside the host's files, which then run one at a time: two jobs on a 2-core machine.
  vm_log=$(mktemp /tmp/sos-test-vm.XXXXXX)
  node --expose-gc dist/test/rdma/softroce.test.js > "$vm_log" 2>&1 &
  vm_pid=$!
  jobs_arg=(--jobs=1)
else
  jobs_arg=()
fi
lint_failed=0
if ! scripts/lint.sh; then lint_failed=1; fi

echo "== tap"
npx tap --reporter=tap "${jobs_arg[@]}" "${files[@]}" 2>&1 | tee "$log"
tap_rc=${PIPESTATUS[0]}

# tap's closing line: "# { total: N, pass: N, fail: N, ... }"
summary=$(grep -E '^# \{ total:' "$log" | tail -1)
num() { echo "$1" | grep -oE "$2: [0-9]+" | grep -oE '[0-9]+' || echo 0; }
pass=$(num "$summary" pass); failed=$(num "$summary" fail); skip=$(num "$summary" skip)
[ -n "$summary" ] || failed=$((failed + 1))
[ "$tap_rc" = 0 ] || [ "$failed" -gt 0 ] || failed=1
if [ -n "$vm_log" ]; then
  wait "$vm_pid"
  vm_rc=$?
  echo "== tap: dist/test/rdma/softroce.test.js (ran beside the others)"
  cat "$vm_log"
  vm_summary=$(grep -E '^# \{ total:' "$vm_log" | tail -1)
  pass=$((pass + $(num "$vm_summary" pass)))
  vm_failed=$(num "$vm_summary" fail)
  [ -n "$vm_summary" ] || vm_failed=$((vm_failed + 1))
  [ "$vm_rc" = 0 ] || [ "$vm_failed" -gt 0 ] || vm_failed=1
  failed=$((failed + vm_failed))
  skip=$((skip + $(num "$vm_summary" skip)))
fi
failed=$((failed + lint_failed))
# CI shows only the end of what this prints: every failure again, with its diagnostics, last.
digest() {
  awk '/^ *# Subtest: dist\// { file = $3 }
       /^ *not ok / { if (file != shown) { print "-- " file; shown = file }; print; n = 0; diag = 1; next }
       diag && /^ *---$/ { indiag = 1 }
       diag && indiag { if (n++ < 40) print; if (/^ *\.\.\.$/) { indiag = 0; diag = 0 }; next }
       { diag = 0 }' "$1" | head -n 200
}
if [ "$failed" -gt 0 ]; then
  echo "== failures"
  digest "$log"
  [ -z "$vm_log" ] || digest "$vm_log"
fi
rm -f "$log" ${vm_log:+"$vm_log"}
echo "$pass passed, $failed failed, $skip skipped"
[ "$failed" = 0 ]
