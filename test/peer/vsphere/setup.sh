#!/usr/bin/env bash
# Builds VMware's vSphere simulator (vcsim) and govc from github.com/vmware/govmomi through the Go
# module proxy, cached outside the repo under ${VMMEM_CACHE:-$HOME/.cache/vmmem}/vsphere/<version>/bin.
# Idempotent: a cached build of the pinned version is reused. Fails loudly.
# Prints the bin directory on stdout (last line).
#
#   GOVMOMI_VERSION=v0.46.3 bash test/peer/vsphere/setup.sh
set -euo pipefail

version="${GOVMOMI_VERSION:-v0.46.3}"
cache="${VMMEM_CACHE:-$HOME/.cache/vmmem}"
dir="$cache/vsphere/$version"
bin="$dir/bin"

die() { echo "vsphere setup: $*" >&2; exit 1; }

if [[ -x "$bin/vcsim" && -x "$bin/govc" && -f "$dir/.complete" ]]; then
  echo "$bin"
  exit 0
fi

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || die "Go toolchain not found on PATH (needed to build vcsim $version)"

mkdir -p "$bin"
# A lock so that two test files starting at once do not build twice into the same directory.
exec 9>"$dir/.lock"
flock 9
if [[ -x "$bin/vcsim" && -x "$bin/govc" && -f "$dir/.complete" ]]; then
  echo "$bin"
  exit 0
fi

start=$(date +%s)
echo "vsphere setup: building vcsim and govc $version into $bin" >&2
export GOBIN="$bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0
go install "github.com/vmware/govmomi/vcsim@$version" >&2 || die "go install vcsim@$version failed"
go install "github.com/vmware/govmomi/govc@$version" >&2 || die "go install govc@$version failed"
[[ -x "$bin/vcsim" ]] || die "vcsim binary missing after build: $bin/vcsim"
[[ -x "$bin/govc" ]] || die "govc binary missing after build: $bin/govc"
touch "$dir/.complete"
echo "vsphere setup: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
