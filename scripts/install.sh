#!/usr/bin/env bash
# Install npm dependencies (only when package-lock.json changed) and build
# the addon, the repository's test and bench executables and the TypeScript.
# Idempotent; a re-run with nothing changed takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.sos-lock-hash
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "== npm ci"
  # --ignore-scripts: the addon is built below, with the sources of this checkout
  npm ci --no-audit --no-fund --ignore-scripts >/dev/null
  echo "$want" > "$stamp"
fi
echo "== build (native addon, TypeScript)"
# --loglevel=warn: no "gyp info" lines on a first run; compiler errors and
# node-gyp's own failure report still reach stderr.
gyp=(npx node-gyp --loglevel=warn)
if [ -f build/Makefile ]; then "${gyp[@]}" build -j "$(nproc)" >/dev/null; else "${gyp[@]}" rebuild -j "$(nproc)" >/dev/null; fi
scripts/build-tools.sh
# Drop compiled files whose source is gone (a deleted test must not keep running).
if [ -d dist ]; then
  find dist -name '*.js' | while read -r js; do
    src=${js#dist/}; src=${src%.js}.ts
    [ -f "$src" ] || rm -f "$js" "${js%.js}.d.ts" "$js.map"
  done
fi
npx tsc -p tsconfig.json
