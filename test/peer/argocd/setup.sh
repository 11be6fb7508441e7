#!/usr/bin/env bash
# The Lua interpreters that run deploy/argocd/health.lua in test/peer/argocd/health-lua.test.ts:
# lua5.4 (Debian) and lua5.1 (the language version of gopher-lua, which Argo CD embeds).
# Installs them with apt-get when missing; idempotent; fails loudly when it cannot.
set -euo pipefail
log() { printf 'argocd setup: %s\n' "$*" >&2; }
# shellcheck source=../apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/../apt.sh"

# gopher-lua, the Lua VM Argo CD embeds: test/peer/argocd/gopher-lua/main.go runs the health script
# as Argo CD does. Built once into the cache, keyed by its sources (health-lua.test.ts computes the
# same key: sha256 of go.sum then main.go, 12 hex digits).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/gopher-lua"
key=$(cat "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
bin="${VMMEM_CACHE:-$HOME/.cache/vmmem}/argocd/gopher-lua-$key/gopher-lua-health"
if [[ -x "$bin" ]]; then
  log "cached: $bin"
else
  go=$(command -v go || echo /usr/local/go/bin/go)
  [[ -x "$go" ]] || { log "ERROR: no Go toolchain to build $bin"; exit 1; }
  log "building $bin (gopher-lua $(sed -n 's/^require github.com\/yuin\/gopher-lua //p' "$src/go.mod"))"
  mkdir -p "$(dirname "$bin")"
  (cd "$src" && "$go" build -trimpath -o "$bin.tmp" .) >&2
  mv "$bin.tmp" "$bin"
fi

missing=()
for v in 5.4 5.1; do
  command -v "lua$v" >/dev/null 2>&1 || missing+=("lua$v")
done
if ((${#missing[@]} == 0)); then
  log "cached: $(lua5.4 -v 2>&1) / $(lua5.1 -v 2>&1)"
  exit 0
fi

# Installing lua5.1 would repoint the `lua` alternative at 5.1: keep whatever it was.
lua_before=$(readlink -f /usr/bin/lua 2>/dev/null || true)
luac_before=$(readlink -f /usr/bin/luac 2>/dev/null || true)
apt_install "${missing[@]}"
for p in "${missing[@]}"; do
  command -v "$p" >/dev/null 2>&1 || { log "ERROR: $p still missing after apt-get install"; exit 1; }
done
if [[ -n "$lua_before" ]] && command -v update-alternatives >/dev/null 2>&1; then
  "${sudo[@]}" update-alternatives --set lua-interpreter "$lua_before" >&2 || true
  [[ -n "$luac_before" ]] && { "${sudo[@]}" update-alternatives --set lua-compiler "$luac_before" >&2 || true; }
fi
log "installed: $(lua5.4 -v 2>&1) / $(lua5.1 -v 2>&1)"
