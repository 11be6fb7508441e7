#!/usr/bin/env bash
# Installs the npm dependencies (including Node 24 itself, as the npm package
# `node`) when node_modules is missing or older than package-lock.json.
# Sourced by run.sh and test.sh so a fresh clone needs no other step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamp="$root/node_modules/.vmmem-lock.sha256"
want="$(sha256sum "$root/package-lock.json" | cut -d' ' -f1)"
if [[ ! -x "$root/node_modules/.bin/node" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "vmmem: installing npm dependencies (npm ci)…" >&2
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" > "$stamp"
fi
export PATH="$root/node_modules/.bin:$PATH"
