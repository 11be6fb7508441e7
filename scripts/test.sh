#!/usr/bin/env bash
# The whole test suite, from a fresh clone: dependencies, lint, type-check,
# unit tests, then the real peers (kube-apiserver + etcd, libvirtd + QEMU,
# vcsim) installed/built into ~/.cache/vmmem when missing, and the tests
# that run against them. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
echo "== node $(node --version)"

echo "== lint"; eslint . --max-warnings=0
echo "== type-check"; tsc -p tsconfig.json --noEmit

# Each real peer has a setup script that installs or builds it (cached) and
# fails loudly when it cannot. They run before any test so a missing peer is
# reported as such, not as a confusing test failure.
for setup in test/peer/*/setup.sh; do
  [[ -e "$setup" ]] || continue
  echo "== peer setup: $setup"
  bash "$setup"
done

echo "== tests"
# One file at a time per core; real-peer files start one peer each and share it.
exec node --test --test-concurrency="${VMMEM_TEST_CONCURRENCY:-2}" --test-reporter=spec \
  --test-reporter-destination=stdout \
  'test/unit/**/*.test.ts' 'test/peer/**/*.test.ts' 'test/conformance/**/*.test.ts' 'test/e2e/**/*.test.ts' 'test/security/**/*.test.ts'
