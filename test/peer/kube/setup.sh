#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd used by the Kubernetes test environment (test/env/kube.ts)
# from the Go module in test/env/go, into
#   ${VMMEM_CACHE:-$HOME/.cache/vmmem}/kube/<key>/bin/{kube-apiserver,etcd}
# <key> = kubernetes-<ver>_etcd-<ver>_<sha256 of go.mod, go.sum, etcd/main.go, kube-apiserver/main.go>[:12]
# (test/env/kube/binaries.ts computes the same key). Idempotent: when that directory is complete it exits at once.
# Prints the bin directory on stdout; progress and errors go to stderr. Exits non-zero on failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod=$(cd "$here/../../env/go" && pwd)
cache=${VMMEM_CACHE:-$HOME/.cache/vmmem}

log() { printf 'kube setup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH (need Go >= 1.26 to build kube-apiserver and etcd)"

kube_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$mod/go.mod")
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ { print $2; exit }' "$mod/go.mod")
[[ -n "$kube_version" && -n "$etcd_version" ]] || die "cannot read k8s.io/kubernetes / etcd server versions from $mod/go.mod"
hash=$(cat "$mod/go.mod" "$mod/go.sum" "$mod/etcd/main.go" "$mod/kube-apiserver/main.go" | sha256sum | cut -c1-12)
key="kubernetes-${kube_version}_etcd-${etcd_version}_${hash}"
dir="$cache/kube/$key"
bin="$dir/bin"

complete() { [[ -f "$dir/.complete" && -x "$bin/kube-apiserver" && -x "$bin/etcd" ]]; }

if complete; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

mkdir -p "$cache/kube"
# One build at a time per key (two test runs may call setup.sh together).
exec 9>"$cache/kube/.$key.lock"
flock 9
if complete; then
  log "cached (built by a concurrent run): $bin"
  echo "$bin"
  exit 0
fi

tmp=$(mktemp -d "$cache/kube/.build-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
buildlog="$tmp/build.log"

major=${kube_version#v}; major=${major%%.*}
minor=${kube_version#v*.}; minor=${minor%%.*}
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$now"
done
ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=${etcd_version}"

log "building kube-apiserver $kube_version and etcd $etcd_version (cold build takes a while; see docs/testing.md)"
log "  module: $mod"
log "  output: $bin"
start=$(date +%s)
mkdir -p "$tmp/bin"
if ! (cd "$mod" && GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false" \
      go build -trimpath -ldflags="$ldflags" -o "$tmp/bin/" ./kube-apiserver ./etcd) >"$buildlog" 2>&1; then
  log "go build failed in $mod:"
  cat "$buildlog" >&2
  die "build of kube-apiserver/etcd failed (exact error above)"
fi
grep -v "^go: downloading " "$buildlog" >&2 || true
for b in kube-apiserver etcd; do
  [[ -x "$tmp/bin/$b" ]] || die "go build produced no $b binary in $tmp/bin"
done
"$tmp/bin/kube-apiserver" --version >&2 || die "built kube-apiserver does not run"
"$tmp/bin/etcd" --version >&2 || die "built etcd does not run"

rm -rf "$dir"
mkdir -p "$dir"
mv "$tmp/bin" "$bin"
printf 'kubernetes=%s\netcd=%s\ngo=%s\nbuilt=%s\nseconds=%s\n' \
  "$kube_version" "$etcd_version" "$(go env GOVERSION)" "$now" "$(( $(date +%s) - start ))" >"$dir/.complete"
log "built in $(( $(date +%s) - start ))s: $bin"
echo "$bin"
