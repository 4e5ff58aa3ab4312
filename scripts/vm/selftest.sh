#!/usr/bin/env bash
# Inside the VM: is soft-RoCE usable? (device, port, GID, a verbs ping-pong)
set -u
ibv_devices | grep -q rxe0 || { echo "selftest: no rxe0"; exit 1; }
ibv_devinfo -d rxe0 | grep -q PORT_ACTIVE || { echo "selftest: rxe0 port not active"; exit 1; }
ibv_rc_pingpong -d rxe0 -g 1 -n 100 >/tmp/pp.log 2>&1 &
for _ in $(seq 1 100); do ss -ltn | grep -q ':18515 ' && break; sleep 0.1; done
ibv_rc_pingpong -d rxe0 -g 1 -n 100 127.0.0.1 || { echo "selftest: ibv_rc_pingpong failed"; exit 1; }
wait
echo "selftest: soft-RoCE ok"
