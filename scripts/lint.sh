#!/usr/bin/env bash
# The lint step (run by scripts/test.sh, and by `npm run lint`): type-aware eslint,
# formatting, import cycles. Prints what failed and exits non-zero if anything did.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
step() { local name=$1; shift; echo "== lint: $name"; "$@" || failed+=("$name"); }

step eslint npx eslint .
step prettier npx prettier --check --log-level warn .
# No runtime import cycle in lib/ (.dependency-cruiser.cjs says why type-only imports may close one).
step cycles npx depcruise lib --config .dependency-cruiser.cjs

if [ ${#failed[@]} -gt 0 ]; then echo "lint failed: ${failed[*]}" >&2; exit 1; fi
