#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml) into deploy/crds/ and rewrites its kustomization's resource
# list. test/peer/kube/deploy.test.ts checks that deploy/crds equals crds/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$root/crds"
dst="$root/deploy/crds"
find "$dst" -maxdepth 1 -name '*.yaml' ! -name kustomization.yaml -delete
cp "$src"/*.yaml "$dst"/
{
  sed -n '/^resources:/q;p' "$dst/kustomization.yaml"
  echo 'resources:'
  for f in "$src"/*.yaml; do echo "  - $(basename "$f")"; done
} >"$dst/kustomization.yaml.new"
mv "$dst/kustomization.yaml.new" "$dst/kustomization.yaml"
echo "deploy/crds: $(cd "$src" && ls *.yaml | tr '\n' ' ')" >&2
