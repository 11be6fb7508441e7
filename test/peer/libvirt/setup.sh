#!/usr/bin/env bash
# Installs the libvirt peer used by test/peer/libvirt and bench/libvirt.ts:
# Debian's libvirtd + QEMU driver + QEMU (TCG) + virsh + python3-libvirt.
# Not libvirt-daemon-system: the tests start their own isolated libvirtd
# (test/env/libvirtd.ts), nothing runs as a system service.
# Idempotent; fails loudly when something cannot be installed.
set -euo pipefail

PKGS=(libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients python3-libvirt)
BINS=(/usr/sbin/libvirtd /usr/sbin/virtlogd /usr/bin/qemu-system-x86_64 /usr/bin/virsh /usr/bin/unshare)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "libvirt peer: missing packages ${missing[*]} and not root: install them with apt-get" >&2
    exit 1
  fi
  echo "libvirt peer: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Update the package lists once when they are absent or when the install fails on stale lists.
  if [[ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]]; then
    apt-get update -q
  fi
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

for b in "${BINS[@]}"; do
  [[ -x "$b" ]] || { echo "libvirt peer: $b missing after install" >&2; exit 1; }
done

# QEMU under libvirt expects these accounts to exist even though our
# qemu.conf runs QEMU as root.
if [[ $(id -u) -eq 0 ]]; then
  getent group kvm >/dev/null || groupadd --system kvm
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null ||
    useradd --system -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
fi
getent passwd libvirt-qemu >/dev/null || { echo "libvirt peer: user libvirt-qemu missing" >&2; exit 1; }
getent group kvm >/dev/null || { echo "libvirt peer: group kvm missing" >&2; exit 1; }

# python3-libvirt lives in Debian's python; make sure that interpreter sees it.
/usr/bin/python3 -c 'import libvirt' || { echo "libvirt peer: /usr/bin/python3 cannot import libvirt" >&2; exit 1; }

echo "libvirt peer: $(/usr/sbin/libvirtd --version), $(/usr/bin/qemu-system-x86_64 --version | head -1)"

# The real guest the guest-*.test.ts files boot (kernel + busybox initramfs, cached in
# ~/.cache/vmmem/guest): built here so a test run never starts with a cold download.
bash "$(dirname "${BASH_SOURCE[0]}")/guest-image.sh" >/dev/null
