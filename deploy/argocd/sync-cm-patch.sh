#!/usr/bin/env bash
# Writes argocd-cm-patch.yaml from health.lua (the same script for both kinds).
# test/peer/argocd/health-lua.test.ts fails when the two drift.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
indent() { sed -e 's/^/    /' -e 's/^ *$//' "$here/health.lua"; }
{
  cat <<'YAML'
# Argo CD health checks for vmmem's kinds, from health.lua (regenerate: bash deploy/argocd/sync-cm-patch.sh).
# Merge into Argo CD's argocd-cm, e.g. as a patch in the kustomization that installs Argo CD
# (`target` makes it match argocd-cm whatever its namespace; upstream install.yaml sets none):
#   patches:
#     - path: argocd-cm-patch.yaml
#       target: {kind: ConfigMap, name: argocd-cm}
# or, on a running Argo CD, with server-side apply (only these two keys change hands):
#   kubectl apply --server-side --field-manager=vmmem-health -f deploy/argocd/argocd-cm-patch.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
YAML
  for kind in VirtualMachineMemory Hypervisor; do
    echo "  resource.customizations.health.vmmem.io_${kind}: |"
    indent
  done
} >"$here/argocd-cm-patch.yaml"
