#!/usr/bin/env bash
# Builds Helm (a Go program) from the Go module proxy into
#   ${VMMEM_CACHE:-$HOME/.cache/vmmem}/helm/<version>/helm
# for test/peer/helm/chart.test.ts (helm lint / template / package of charts/vmmem). Helm has no
# Debian package here and no release download is reachable, so `go install` it is. Pinned: bump
# HELM_VERSION here and in test/peer/helm/helm.ts together. Idempotent (exits at once when built);
# prints the binary's path on stdout; fails loudly.
set -euo pipefail
HELM_VERSION=v4.3.2
cache=${VMMEM_CACHE:-$HOME/.cache/vmmem}
dir="$cache/helm/$HELM_VERSION"
log() { printf 'helm setup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

complete() { [[ -f "$dir/.complete" && -x "$dir/helm" ]]; }
if complete; then log "cached: $dir/helm"; echo "$dir/helm"; exit 0; fi

command -v go >/dev/null 2>&1 || die "go is not on PATH (need Go >= 1.26 to build helm $HELM_VERSION)"
mkdir -p "$cache/helm"
exec 9>"$cache/helm/.$HELM_VERSION.lock"
flock 9
if complete; then log "cached (built by a concurrent run): $dir/helm"; echo "$dir/helm"; exit 0; fi

tmp=$(mktemp -d "$cache/helm/.build-$HELM_VERSION.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "building helm $HELM_VERSION with $(go version) (go install helm.sh/helm/v4/cmd/helm@$HELM_VERSION)"
start=$(date +%s)
# -ldflags: helm reports its version from internal/version; without it `helm version` says v4-dev.
if ! GOBIN="$tmp" GOFLAGS="${GOFLAGS:-} -buildvcs=false" go install -trimpath \
    -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >"$tmp/build.log" 2>&1; then
  cat "$tmp/build.log" >&2
  die "go install of helm $HELM_VERSION failed (exact error above)"
fi
[[ -x "$tmp/helm" ]] || die "go install produced no helm binary in $tmp"
"$tmp/helm" version >&2 || die "built helm does not run"
rm -rf "$dir"; mkdir -p "$dir"
mv "$tmp/helm" "$dir/helm"
printf 'helm=%s\ngo=%s\nseconds=%s\n' "$HELM_VERSION" "$(go version)" "$(( $(date +%s) - start ))" >"$dir/.complete"
log "built $dir/helm in $(( $(date +%s) - start )) s"
echo "$dir/helm"
