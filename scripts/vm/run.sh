#!/usr/bin/env bash
# Boot the soft-RoCE VM and run SCRIPT inside it (path relative to the
# project; extra args are passed on), then power off. Exits with SCRIPT's exit
# code; 97 when the VM cannot start here (missing qemu or kernel: the message
# says what), 98 when it started but never reported a result (timeout, crash).
#   scripts/vm/run.sh scripts/vm/selftest.sh
# Env: SOS_VM_TIMEOUT (s, default 1200), SOS_VM_MEM (default 4G), SOS_VM_SMP (default 2),
#      SOS_VM_LOG (console log file, default .cache/vm/console.log)
set -uo pipefail
cd "$(dirname "$0")/../.."
project=$(pwd)
cache=$project/.cache/vm
script=${1:?usage: scripts/vm/run.sh SCRIPT [ARGS...]}
shift
args=$(IFS=,; echo "$*")
command -v qemu-system-x86_64 >/dev/null || { echo "soft-RoCE VM: qemu-system-x86_64 is missing (run scripts/setup-host.sh)"; exit 97; }
[ -f "$cache/kernel/kernel.env" ] || { echo "soft-RoCE VM: no VM kernel in $cache/kernel (run scripts/setup-host.sh)"; exit 97; }
# shellcheck disable=SC1091
. "$cache/kernel/kernel.env"
if [ ! -f "$cache/initramfs.cpio.gz" ] || [ scripts/vm/initramfs-init.sh -nt "$cache/initramfs.cpio.gz" ] || [ "$cache/kernel/kernel.env" -nt "$cache/initramfs.cpio.gz" ]; then
  scripts/vm/build-initramfs.sh >/dev/null || { echo "soft-RoCE VM: building the initramfs failed"; exit 97; }
fi
result=$cache/result.$$
rm -f "$result"
log=${SOS_VM_LOG:-$cache/console.log}
append="console=ttyS0 panic=-1 no_timer_check quiet loglevel=3 sos.stage2=$project/scripts/vm/vm-init.sh sos.project=$project"
append+=" sos.modules=$cache/kernel/lib/modules sos.run=$script sos.result=$result sos.args=$args"
timeout "${SOS_VM_TIMEOUT:-1200}" qemu-system-x86_64 -accel tcg,thread=multi -cpu max \
  -smp "${SOS_VM_SMP:-2}" -m "${SOS_VM_MEM:-4G}" \
  -kernel "$cache/kernel/$VMLINUZ" -initrd "$cache/initramfs.cpio.gz" -append "$append" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap,id=hostroot" \
  -virtfs "local,path=$project,mount_tag=project,security_model=none,multidevs=remap,id=project" \
  -nic user,restrict=on,model=virtio-net-pci \
  -nographic -serial mon:stdio -no-reboot -nodefaults </dev/null 2>&1 | tee "$log" | sed -u 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g'
if [ ! -f "$result" ]; then
  echo "soft-RoCE VM: no result from $script (timeout or crash); console log: $log"
  exit 98
fi
rc=$(cat "$result")
rm -f "$result"
exit "$rc"
