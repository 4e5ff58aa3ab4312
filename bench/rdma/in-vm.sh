#!/usr/bin/env bash
# Inside the soft-RoCE VM (bench/rdma/index.ts boots it through
# scripts/vm/run.sh): our binding and perftest on rxe0, one node process that
# also drives perftest; its options arrive as this script's arguments.
set -u
command -v ib_read_lat >/dev/null || { echo "bench/rdma: perftest is not installed (scripts/setup-host.sh installs it)"; exit 3; }
ibv_devinfo -d rxe0 2>/dev/null | grep -q PORT_ACTIVE || { echo "bench/rdma: rxe0 is missing or not active"; exit 4; }
[ -f dist/bench/rdma/vm.js ] || { echo "bench/rdma: dist/bench/rdma/vm.js is not built"; exit 5; }
echo "[bench/rdma] in the VM at $(cut -d' ' -f1 /proc/uptime)s, clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
node dist/bench/rdma/vm.js "$@"
rc=$?
echo "[bench/rdma] done at $(cut -d' ' -f1 /proc/uptime)s (exit $rc)"
exit $rc
