#!/usr/bin/env bash
# The longer fault-injection scenarios that do not fit CI's time (npm run test:chaos).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
for setup in test/peer/kube/setup.sh test/peer/libvirt/setup.sh test/peer/vsphere/setup.sh; do bash "$setup"; done
exec node --test --test-concurrency=1 --test-reporter=spec 'test/chaos/**/*.test.ts'
