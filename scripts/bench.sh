#!/usr/bin/env bash
# Run one benchmark: scripts/bench.sh NAME [options...]   (npm run bench -- NAME [options...])
# Builds what is stale first (native addon and helper programs incrementally,
# TypeScript when a source is newer than its output), then runs bench/NAME.
# The benchmark's last line of output is one JSON object.
#   scripts/bench.sh uffd                 fault service: native engine vs C floor vs JS handler
#   scripts/bench.sh uffd --help          its options
set -euo pipefail
cd "$(dirname "$0")/.."

list() { find bench -mindepth 1 -maxdepth 1 -type d ! -name out -printf '%f\n' | sort | tr '\n' ' '; }
name=${1:-}
if [ -z "$name" ] || [ "$name" = "-h" ] || [ "$name" = "--help" ]; then
  echo "usage: scripts/bench.sh NAME [options...]   (npm run bench -- NAME [options...])" >&2
  echo "benchmarks: $(list)" >&2
  exit 2
fi
shift
if [ ! -d "bench/$name" ]; then
  echo "scripts/bench.sh: no benchmark bench/$name (have: $(list))" >&2
  exit 2
fi
[ "$(id -u)" = 0 ] || echo "scripts/bench.sh: warning: not root; userfaultfd may be refused (vm.unprivileged_userfaultfd)" >&2

# Dependencies and a first build: the project's installer (idempotent).
# (Also when package-lock.json changed since the last npm ci: a new dependency.)
stamp=node_modules/.sos-lock-hash
if [ ! -d node_modules ] || [ ! -f build/Makefile ] || [ "$(cat "$stamp" 2>/dev/null)" != "$(sha256sum package-lock.json | cut -d' ' -f1)" ]; then
  scripts/install.sh >&2
fi

# Native: make is incremental (and regenerates its Makefile when binding.gyp changed).
npx node-gyp build -j "$(nproc)" >/dev/null 2>&1 || npx node-gyp build -j "$(nproc)" >&2

# TypeScript: recompile when any source is newer than the compiled benchmark.
out="dist/bench/$name/index.js"
if [ -f "bench/$name/index.ts" ]; then
  if [ ! -f "$out" ] || [ -n "$(find lib bench tsconfig.json -newer "$out" \( -name '*.ts' -o -name tsconfig.json \) -print -quit 2>/dev/null)" ]; then
    # Type errors elsewhere in the tree (work in progress) need not stop a benchmark: tsc still emits.
    npx tsc -p tsconfig.json >&2 || echo "scripts/bench.sh: warning: tsc reported errors" >&2
  fi
  [ -f "$out" ] || { echo "scripts/bench.sh: $out was not built" >&2; exit 1; }
  exec node "$out" "$@"
fi
for f in "bench/$name/index.mjs" "bench/$name/index.js"; do
  [ -f "$f" ] && exec node "$f" "$@"
done
if [ -f "bench/$name/run.sh" ]; then exec bash "bench/$name/run.sh" "$@"; fi
echo "scripts/bench.sh: bench/$name has no index.ts, index.mjs, index.js or run.sh" >&2
exit 2
