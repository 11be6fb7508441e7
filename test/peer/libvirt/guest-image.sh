#!/usr/bin/env bash
# Builds the tiny Linux guest the libvirt peer tests boot (test/env/guest.ts, DESIGN §7):
# Debian's cloud kernel (direct kernel boot, no disk) and a busybox initramfs whose /init
# (guest-init.sh) loads virtio_pci, virtio_balloon, virtio_mem and virtio_console.
#
# Output: ${VMMEM_CACHE:-$HOME/.cache/vmmem}/guest/<key>/{vmlinuz,initrd.img,.complete}
#   <key> = linux-<kernel package version>_busybox-<version>_<sha256 of this script + guest-init.sh>[:12]
# Idempotent: a complete directory is reused at once. Prints the directory on stdout; progress and
# errors on stderr; exits non-zero (with apt's own words) when something cannot be fetched or built.
# Needs apt-get/apt-cache (Debian/Ubuntu) for the two packages; root is not required.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VMMEM_CACHE:-$HOME/.cache/vmmem}
KERNEL_META=${VMMEM_GUEST_KERNEL:-linux-image-cloud-amd64}
# Modules the guest needs, all =m in Debian's cloud config (CONFIG_VIRTIO_PCI, _BALLOON, _MEM,
# _CONSOLE); the serial console (8250), devtmpfs and memory hot-plug are built in.
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_balloon virtio_mem virtio_console)

log() { printf 'guest image: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

hash=$(cat "$here/guest-image.sh" "$here/guest-init.sh" | sha256sum | cut -c1-12)
# Fast path (no apt, which takes seconds on a loaded machine): an image already built from this
# script + init is reused whatever kernel version apt offers today. Remove the directory to pick
# up a newer kernel. test/env/guest.ts looks the same way.
for d in $(ls -1d "$cache"/guest/linux-*_"$hash" 2>/dev/null | sort -r); do
  if [[ -f "$d/.complete" && -s "$d/vmlinuz" && -s "$d/initrd.img" ]]; then
    log "cached: $d"
    echo "$d"
    exit 0
  fi
done

command -v apt-cache >/dev/null 2>&1 || die "apt-cache not found: the guest image is built from Debian packages ($KERNEL_META, busybox-static)"
candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'; }

kmeta_ver=$(candidate "$KERNEL_META")
[[ -n "$kmeta_ver" && "$kmeta_ver" != "(none)" ]] || die "apt knows no candidate for $KERNEL_META (run apt-get update?)"
# The meta package depends on exactly one linux-image-<abi>-cloud-amd64 (= same version).
kpkg=$(apt-cache depends "$KERNEL_META=$kmeta_ver" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
[[ -n "$kpkg" ]] || die "cannot find the kernel image package $KERNEL_META=$kmeta_ver depends on"
bb_ver=$(candidate busybox-static)
[[ -n "$bb_ver" && "$bb_ver" != "(none)" ]] || die "apt knows no candidate for busybox-static"

key="linux-${kmeta_ver}_busybox-${bb_ver#*:}_${hash}"
dir="$cache/guest/$key"

complete() { [[ -f "$dir/.complete" && -s "$dir/vmlinuz" && -s "$dir/initrd.img" ]]; }
if complete; then
  log "cached: $dir"
  echo "$dir"
  exit 0
fi

mkdir -p "$cache/guest"
exec 9>"$cache/guest/.$key.lock"
flock 9
if complete; then
  log "cached (built by a concurrent run): $dir"
  echo "$dir"
  exit 0
fi

start=$(date +%s)
tmp=$(mktemp -d "$cache/guest/.build-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "building $key ($kpkg $kmeta_ver, busybox-static $bb_ver)"
# apt-get download as root warns that the _apt sandbox user cannot write here: harmless.
if ! (cd "$tmp" && apt-get download -q "$kpkg=$kmeta_ver" "busybox-static=$bb_ver") >"$tmp/apt.log" 2>&1; then
  cat "$tmp/apt.log" >&2
  die "apt-get download $kpkg=$kmeta_ver busybox-static=$bb_ver failed (apt's output above)"
fi
mkdir -p "$tmp/k" "$tmp/bb" "$tmp/root"
dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/k" || die "cannot unpack $kpkg"
dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/bb" || die "cannot unpack busybox-static"

vmlinuz=$(ls "$tmp"/k/boot/vmlinuz-* 2>/dev/null | head -1)
[[ -n "$vmlinuz" ]] || die "$kpkg has no /boot/vmlinuz-*"
kver=${vmlinuz##*/vmlinuz-}
config="$tmp/k/boot/config-$kver"
for opt in CONFIG_MEMORY_HOTPLUG CONFIG_DEVTMPFS CONFIG_SERIAL_8250_CONSOLE CONFIG_BLK_DEV_INITRD; do
  grep -q "^$opt=y" "$config" || die "$kpkg: $opt is not built in (the guest needs it)"
done
grep -q '^CONFIG_MODULE_COMPRESS_NONE=y' "$config" || die "$kpkg compresses its modules; busybox insmod here expects plain .ko files"

bb="$tmp/bb/bin/busybox"
[[ -x "$bb" ]] || die "busybox-static has no /bin/busybox"
root="$tmp/root"
mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
cp "$bb" "$root/bin/busybox"
for app in $("$bb" --list); do [[ "$app" == busybox ]] || ln -s busybox "$root/bin/$app"; done
for m in "${MODULES[@]}"; do
  ko=$(find "$tmp/k/lib/modules/$kver" -name "$m.ko" | head -1)
  [[ -n "$ko" ]] || die "$kpkg has no module $m.ko (is it built in? check $config)"
  cp "$ko" "$root/lib/modules/$m.ko"
done
install -m 0755 "$here/guest-init.sh" "$root/init"
# newc cpio by busybox itself (no cpio package needed), gzip: the kernel unpacks it as rootfs.
(cd "$root" && find . | LC_ALL=C sort | "$bb" cpio -o -H newc 2>/dev/null | gzip -9n) >"$tmp/initrd.img" \
  || die "cannot pack the initramfs"
cp "$vmlinuz" "$tmp/vmlinuz"

rm -rf "$dir"
mkdir -p "$dir"
mv "$tmp/vmlinuz" "$tmp/initrd.img" "$dir/"
printf 'kernel=%s %s (%s)\nbusybox=%s\nmodules=%s\nbuilt=%s\nseconds=%s\n' \
  "$kpkg" "$kmeta_ver" "$kver" "$bb_ver" "${MODULES[*]}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(($(date +%s) - start))" \
  >"$dir/.complete"
log "built $dir in $(($(date +%s) - start)) s (vmlinuz $(du -k "$dir/vmlinuz" | cut -f1) KiB, initrd $(du -k "$dir/initrd.img" | cut -f1) KiB)"
echo "$dir"
