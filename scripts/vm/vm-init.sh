#!/bin/bash
# Stage 2, PID 1 of the soft-RoCE VM (host root read-only + tmpfs overlay).
# Mounts the project folder read-write at its own path, loads rdma_rxe on the
# virtio NIC (rxe0, GID index 1 = the IPv4-mapped RoCEv2 GID), runs the script
# named by sos.run= and records its exit code, then powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
arg() { sed -n "s/.* sos.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
project=$(arg project)
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 project "$project" || echo "[vm] cannot mount $project read-write"
# The host kernel has no modules; the VM kernel's are unpacked in the project cache.
ln -sfn "$(arg modules)" /usr/lib/modules
hostname sos-softroce
ip link set lo up
modprobe virtio_net && ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0
for m in rdma_rxe ib_uverbs rdma_ucm ib_umad; do modprobe "$m" || echo "[vm] modprobe $m failed"; done
rdma link add rxe0 type rxe netdev eth0 || echo "[vm] rdma link add rxe0 failed"
echo "[vm] rxe0 ready at $(uptime_s)s"
script=$(arg run); result=$(arg result)
cd "$project" || exit 1
bash "$script" $(arg args | tr ',' ' ')
rc=$?
echo "$rc" > "$result"
sync
echo "[vm] script exit code $rc, powering off at $(uptime_s)s"
echo o > /proc/sysrq-trigger
read -r -t 10 _ </dev/zero 2>/dev/null || true
