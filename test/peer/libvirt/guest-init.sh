#!/bin/sh
# PID 1 of the vmmem test guest (test/peer/libvirt/guest-image.sh packs it as /init).
# Busybox only, no udev. It loads the virtio drivers, onlines hot-plugged memory,
# prints a ready marker on the serial console and then idles, reporting changes of
# the guest's own MemTotal so tests can see the guest's view of its memory.
#
# Kernel command line knobs (test/env/guest.ts sets them):
#   vmmem.skip=virtio_balloon,virtio_mem   do not load these drivers (a guest "without the driver")
# Markers (one line each, on ttyS0):
#   VMMEM-GUEST-READY loaded=<modules> skipped=<modules> memtotal_kib=<n> boot_ms=<uptime>
#   VMMEM-GUEST-MEM memtotal_kib=<n> plugged_blocks=<online memory blocks>
#   VMMEM-GUEST-ERROR <what failed>
export PATH=/bin

# devtmpfs is not mounted automatically for an initramfs, and the kernel could not open
# /dev/console before it was: attach stdio to the console ourselves.
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

skip=""
for w in $(cat /proc/cmdline); do
  case "$w" in vmmem.skip=*) skip="${w#vmmem.skip=}" ;; esac
done

loaded=""
skipped=""
load() {
  if insmod "/lib/modules/$1.ko"; then loaded="$loaded,$1"; else echo "VMMEM-GUEST-ERROR insmod $1 failed"; fi
}
# Dependency order (each module's "depends=" in its .modinfo): ring, core, the PCI transport.
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci; do load "$m"; done
for m in virtio_balloon virtio_mem virtio_console; do
  case ",$skip," in
    *",$m,"*) skipped="$skipped,$m" ;;
    *) load "$m" ;;
  esac
done

# memhp_default_state=online_movable on the command line makes the kernel online the blocks
# virtio-mem adds; this catches any block left offline (e.g. added before the policy applied).
online() {
  for s in /sys/devices/system/memory/memory*/state; do
    [ -f "$s" ] || continue
    [ "$(cat "$s" 2>/dev/null)" = offline ] && echo online_movable >"$s" 2>/dev/null
  done
}
memtotal() { while read -r k v _; do [ "$k" = MemTotal: ] && echo "$v" && return; done </proc/meminfo; }
blocks() {
  n=0
  for s in /sys/devices/system/memory/memory*/state; do [ "$(cat "$s" 2>/dev/null)" = online ] && n=$((n + 1)); done
  echo "$n"
}

online
up=$(cut -d' ' -f1 /proc/uptime)
echo "VMMEM-GUEST-READY loaded=${loaded#,} skipped=${skipped#,} memtotal_kib=$(memtotal) boot_s=$up"

last=""
while :; do
  online
  now="memtotal_kib=$(memtotal) plugged_blocks=$(blocks)"
  [ "$now" != "$last" ] && echo "VMMEM-GUEST-MEM $now"
  last="$now"
  sleep 1
done
