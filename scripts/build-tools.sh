#!/usr/bin/env bash
# The repository's own executables, which the package does not ship: the test
# fixture build/Release/uffd_child (test/helpers/served-child.ts) and the
# benchmark floors build/Release/uffd_floor (bench/uffd/index.ts) and
# build/Release/tcp_floor (bench/memory/index.ts). Called by
# scripts/install.sh; rebuilds only what is older than its source.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/Release
mkdir -p "$out"
build() {  # build NAME SOURCE FLAGS...
  local name=$1 src=$2; shift 2
  [ "$out/$name" -nt "$src" ] && return 0
  cc "$@" -o "$out/$name" "$src"
}
build uffd_child test/fixtures/uffd-child.c -O2 -Wall
build uffd_floor bench/uffd/floor.c -O2 -pthread -Wall -lpthread
build tcp_floor bench/memory/tcp-floor.c -O2 -pthread -Wall -lpthread
build swap_workload bench/memory/swap-workload.c -O2 -Wall
