#!/bin/busybox sh
# Stage 1, PID 1 of the soft-RoCE VM's initramfs: load the few modules needed
# to reach the host's root (virtio, 9p, overlay), mount it read-only with a
# tmpfs overlay for writes, and switch to stage 2 (scripts/vm/vm-init.sh).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /mods/order); do insmod "/mods/$m" || echo "[vm1] insmod $m failed"; done
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /lower; then
  echo "[vm1] cannot mount the host root over 9p"; echo o > /proc/sysrq-trigger; sleep 5
fi
mount -t tmpfs -o size=4g tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || {
  echo "[vm1] overlay failed"; echo o > /proc/sysrq-trigger; sleep 5; }
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
stage2=$(sed -n 's/.* sos.stage2=\([^ ]*\).*/\1/p' /newroot/proc/cmdline)
exec switch_root /newroot "$stage2"
