#!/usr/bin/env bash
# Inside the VM: one compiled in-VM test file, its TAP on the console (for
# working on one file: the suite's rdma-suite.sh runs them all).
#   scripts/vm/run.sh scripts/vm/one.sh memory-link
set -u
. scripts/vm/rdma-env.sh
export TAP_TIMEOUT=600
timeout 600 node --expose-gc "dist/test/rdma/vm/${1:?usage: one.sh NAME (dist/test/rdma/vm/NAME.vm.js)}.vm.js"
