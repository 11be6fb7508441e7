#!/usr/bin/env bash
# The real OpenSSH server (and OpenBSD netcat for `nc -U`, the relay libvirt's ssh transport runs on
# the remote side) for test/security/ssh-transport.test.ts, which starts its own sshd on a loopback
# port as a child process. Installs them with apt-get when missing (Debian: openssh-server,
# netcat-openbsd; no service is enabled or started); idempotent; fails loudly when it cannot.
set -euo pipefail
log() { printf 'ssh setup: %s\n' "$*" >&2; }

missing=()
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v nc >/dev/null 2>&1 || missing+=(netcat-openbsd)
if ((${#missing[@]} == 0)); then
  log "cached: $(/usr/sbin/sshd -V 2>&1 | head -1)"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || { log "ERROR: ${missing[*]} missing and no apt-get to install them"; exit 1; }
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { log "ERROR: ${missing[*]} missing; need root or sudo to apt-get install them"; exit 1; }
  sudo=(sudo)
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Another apt-get may hold the lock: wait for it (up to 10 minutes) instead of failing.
if ! "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >&2; then
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update >&2
  "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >&2
fi
[[ -x /usr/sbin/sshd ]] || { log "ERROR: /usr/sbin/sshd still missing after apt-get install"; exit 1; }
command -v nc >/dev/null 2>&1 || { log "ERROR: nc still missing after apt-get install"; exit 1; }
log "installed: $(/usr/sbin/sshd -V 2>&1 | head -1)"
