#!/usr/bin/env bash
# The lint step (run by scripts/test.sh, and by `npm run lint`): type-aware eslint,
# formatting. Prints what failed and exits non-zero if anything did.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
step() { local name=$1; shift; echo "== lint: $name"; "$@" || failed+=("$name"); }

step eslint npx eslint .
step prettier npx prettier --check --log-level warn .
# A benchmark never imports a test folder: what both need lives in testkit/.
bench_imports() { ! grep -rnE "(from|import\()\s*'(\.\./)+test/" bench --include='*.ts'; }
step bench-imports bench_imports

if [ ${#failed[@]} -gt 0 ]; then echo "lint failed: ${failed[*]}" >&2; exit 1; fi
