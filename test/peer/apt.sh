# Sourced by test/peer/*/setup.sh (after they define `log`): apt_install PKG... installs Debian
# packages as root, or through sudo, and fails loudly when it cannot. Sets the array `sudo` for
# the caller's own privileged follow-ups.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || { log "ERROR: $* missing and no apt-get to install them"; exit 1; }
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { log "ERROR: $* missing; need root or sudo to apt-get install them"; exit 1; }
    sudo=(sudo)
  fi
  log "installing $*"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt-get may hold the lock: wait for it (up to 10 minutes) instead of failing; a stale
  # or empty package list gets one update and a second try.
  if ! "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" >&2; then
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update >&2
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@" >&2
  fi
}
