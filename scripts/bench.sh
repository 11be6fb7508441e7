#!/usr/bin/env bash
# `npm run bench -- <name>`: installs what the benchmarks run against (the
# same cached peers as the test suite), then runs bench/<name>.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
case "${1:-}" in
  scale) bash test/peer/kube/setup.sh >&2 ;;
  libvirt) bash test/peer/libvirt/setup.sh >&2 ;;
esac
exec node bench/main.ts "$@"
