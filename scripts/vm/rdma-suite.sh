#!/usr/bin/env bash
# Inside the VM: the soft-RoCE self-test, then every compiled in-VM test file
# (dist/test/rdma/vm/*.vm.js), each run with node; their TAP output and exit
# codes land in OUT (default .cache/vm/results) for the host-side test to report.
set -u
# The device, address and GID index the tests use (test/rdma/vm/env.ts).
. scripts/vm/rdma-env.sh
out=${1:-.cache/vm/results}
# tap gives a file run directly with node 30 s; under TCG on a busy host the
# rdma_cm and lifetime files take longer. The per-file `timeout` below bounds them.
export TAP_TIMEOUT=900
rm -rf "$out"
mkdir -p "$out"
bash scripts/vm/selftest.sh > "$out/selftest.log" 2>&1
echo $? > "$out/selftest.rc"
for f in dist/test/rdma/vm/*.vm.js; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .vm.js)
  timeout 900 node --expose-gc "$f" > "$out/$name.tap" 2>&1
  echo $? > "$out/$name.rc"
done
exit 0
