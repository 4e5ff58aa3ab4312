#!/usr/bin/env bash
# Sourced by rdma-suite.sh: the RDMA device, its IPv4 address and the GID
# index of that address (a RoCE v2, IPv4-mapped GID) for the tests, exported
# as SOS_RDMA_DEVICE, SOS_RDMA_ADDR and SOS_RDMA_GID_INDEX unless already set.
# In the soft-RoCE VM that is rxe0, 10.0.2.15 and 1; on a host with its own
# RDMA NIC (or rxe), the first device with such a GID.
sos_rdma_detect() {
  local dev gid n t hex a b
  for dev in ${SOS_RDMA_DEVICE:-$(ls /sys/class/infiniband 2>/dev/null)}; do
    for gid in /sys/class/infiniband/"$dev"/ports/1/gids/*; do
      [ -r "$gid" ] || continue
      n=${gid##*/}
      t=$(cat /sys/class/infiniband/"$dev"/ports/1/gid_attrs/types/"$n" 2>/dev/null) || continue
      hex=$(cat "$gid" 2>/dev/null) || continue
      case "$t" in *v2*) ;; *) continue ;; esac
      case "$hex" in 0000:0000:0000:0000:0000:ffff:*) ;; *) continue ;; esac
      a=${hex:30:4}
      b=${hex:35:4}
      SOS_RDMA_DEVICE=$dev
      SOS_RDMA_ADDR=$((16#${a:0:2})).$((16#${a:2:2})).$((16#${b:0:2})).$((16#${b:2:2}))
      SOS_RDMA_GID_INDEX=$n
      return 0
    done
  done
  return 1
}
if [ -z "${SOS_RDMA_ADDR:-}" ] || [ -z "${SOS_RDMA_GID_INDEX:-}" ]; then
  sos_rdma_detect || echo "rdma-env: no RDMA device with an IPv4 RoCE v2 GID; using the VM's defaults" >&2
fi
export SOS_RDMA_DEVICE=${SOS_RDMA_DEVICE:-rxe0} SOS_RDMA_ADDR=${SOS_RDMA_ADDR:-10.0.2.15} SOS_RDMA_GID_INDEX=${SOS_RDMA_GID_INDEX:-1}
