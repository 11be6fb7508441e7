#!/usr/bin/env bash
# The main job on the embedded default: vmmem in standalone mode over the
# example manifests against the in-process `sim` hypervisor. No cluster needed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
exec node src/cli/main.ts demo "$@"
