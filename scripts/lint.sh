#!/usr/bin/env bash
# The lint step (run by scripts/test.sh, and by `npm run lint`): type-aware eslint,
# formatting (prettier for TypeScript and JSON, clang-format for C and C++), import cycles,
# the packed package, the API reference. Prints what failed and exits non-zero if anything
# did. The package step packs dist/ (build first).
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
step() { local name=$1; shift; echo "== lint: $name"; "$@" || failed+=("$name"); }
# Run a chatty tool: its output only when it fails.
quiet() { local out; out=$("$@" 2>&1) || { printf '%s\n' "$out"; return 1; }; }

step eslint npx eslint .
step prettier npx prettier --check --log-level warn .
# C and C++: the addon, and the C programs of the tests and benchmarks (.clang-format).
clang_format() {
  command -v clang-format >/dev/null || { echo "clang-format is not installed (scripts/setup-host.sh installs it)" >&2; return 1; }
  { find native -name '*.cc' -o -name '*.h' -o -name '*.c'; find test/fixtures bench -name '*.c'; } |
    sort | xargs -r clang-format --dry-run --Werror
}
step clang-format clang_format
# A benchmark never imports a test folder: what both need lives in testkit/.
bench_imports() { ! grep -rnE "(from|import\()\s*'(\.\./)+test/" bench --include='*.ts'; }
step bench-imports bench_imports
# No runtime import cycle in lib/ (.dependency-cruiser.cjs says why type-only imports may close one).
step cycles npx depcruise lib --config .dependency-cruiser.cjs
# The tarball as a user gets it: publint (files, exports, fields) and attw (the
# types each export resolves to). Profile esm-only: the package is ESM-only and
# node-only, so moduleResolution node10 (no "exports") and require() from CJS on
# Node 20 are not ways to load it; node16/nodenext ESM and bundlers are checked.
step package quiet bash -c 'npx publint --strict && npx attw --pack . --profile esm-only --format table-flipped --no-emoji'
# The API reference (`npm run docs` writes it to docs/api/) builds from the doc
# comments with no broken link and no public type left out: typedoc.json makes
# warnings errors; here it only validates.
step typedoc npx typedoc --emit none --logLevel Warn

if [ ${#failed[@]} -gt 0 ]; then echo "lint failed: ${failed[*]}" >&2; exit 1; fi
