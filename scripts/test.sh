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
lint_failed=0
if ! scripts/lint.sh; then lint_failed=1; fi

echo "== tap"
files=("$@")
[ ${#files[@]} -gt 0 ] || mapfile -t files < <(find dist/test -name '*.test.js' | sort)
npx tap --reporter=tap "${files[@]}" 2>&1 | tee "$log"
tap_rc=${PIPESTATUS[0]}

# tap's closing line: "# { total: N, pass: N, fail: N, ... }"
summary=$(grep -E '^# \{ total:' "$log" | tail -1)
num() { echo "$summary" | grep -oE "$1: [0-9]+" | grep -oE '[0-9]+' || echo 0; }
pass=$(num pass); failed=$(num fail); skip=$(num skip); todo=$(num todo)
[ -n "$summary" ] || failed=$((failed + 1))
failed=$((failed + lint_failed))
[ "$tap_rc" = 0 ] || [ "$failed" -gt 0 ] || failed=1
rm -f "$log"
echo "$pass passed, $failed failed, $skip skipped"
[ "$failed" = 0 ] && [ "$tap_rc" = 0 ]
