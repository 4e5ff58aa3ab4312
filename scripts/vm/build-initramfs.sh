#!/usr/bin/env bash
# Build .cache/vm/initramfs.cpio.gz for the kernel unpacked by setup-host.sh:
# static busybox plus the modules stage 1 needs (in dependency order).
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=.cache/vm
# shellcheck disable=SC1091
. "$cache/kernel/kernel.env"
k=$cache/kernel
root=$cache/initramfs-root
rm -rf "$root"
mkdir -p "$root"/{bin,mods,proc,sys,dev,lower,rw,newroot}
cp /usr/bin/busybox "$root/bin/busybox"
file -L "$root/bin/busybox" | grep -q 'statically linked' || { echo "busybox is not static (install busybox-static)" >&2; exit 1; }
: > "$root/mods/order"
for m in virtio_pci 9pnet_virtio 9p overlay; do
  modprobe -d "$k" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r f; do
  cp "$f" "$root/mods/"
  basename "$f" >> "$root/mods/order"
done
install -m 0755 scripts/vm/initramfs-init.sh "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$cache/initramfs.cpio.gz"
rm -rf "$root"
echo "built $cache/initramfs.cpio.gz"
