#!/usr/bin/env bash
# The real OpenSSH server (and OpenBSD netcat for `nc -U`, the relay libvirt's ssh transport runs on
# the remote side) for test/security/ssh-transport.test.ts, which starts its own sshd on a loopback
# port as a child process. Installs them with apt-get when missing (Debian: openssh-server,
# netcat-openbsd; no service is enabled or started); idempotent; fails loudly when it cannot.
set -euo pipefail
log() { printf 'ssh setup: %s\n' "$*" >&2; }
# shellcheck source=../apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apt.sh"

missing=()
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v nc >/dev/null 2>&1 || missing+=(netcat-openbsd)
if ((${#missing[@]} == 0)); then
  log "cached: $(/usr/sbin/sshd -V 2>&1 | head -1)"
  exit 0
fi

apt_install "${missing[@]}"
[[ -x /usr/sbin/sshd ]] || { log "ERROR: /usr/sbin/sshd still missing after apt-get install"; exit 1; }
command -v nc >/dev/null 2>&1 || { log "ERROR: nc still missing after apt-get install"; exit 1; }
log "installed: $(/usr/sbin/sshd -V 2>&1 | head -1)"
