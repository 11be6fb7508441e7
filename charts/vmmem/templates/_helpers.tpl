{{/* Object names: the release name when it already says vmmem, else <release>-vmmem. */}}
{{- define "vmmem.fullname" -}}
{{- if contains "vmmem" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-vmmem" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vmmem.labels" -}}
app.kubernetes.io/name: vmmem
app.kubernetes.io/part-of: vmmem
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "vmmem.selectorLabels" -}}
app.kubernetes.io/name: vmmem
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "vmmem.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "vmmem.leaderElect" -}}
{{- if and (not .Values.sharding.enabled) (or .Values.leaderElection.enabled (gt (int .Values.replicas) 1)) }}true{{ end -}}
{{- end -}}

{{/* Namespaces that get a Secret-reading Role: secretNamespaces plus watchNamespace, deduplicated. */}}
{{- define "vmmem.secretNamespaces" -}}
{{- $ns := .Values.secretNamespaces -}}
{{- if .Values.watchNamespace -}}{{- $ns = append $ns .Values.watchNamespace -}}{{- end -}}
{{- $ns | uniq | toJson -}}
{{- end -}}

{{/*
The operator's rules on its own kinds: src/kube/rbac.ts OPERATOR_RULES minus Secrets (granted per
namespace below). test/peer/helm/chart.test.ts checks they equal OPERATOR_RULES and deploy/'s.
*/}}
{{- define "vmmem.operatorRules" -}}
- apiGroups: [vmmem.io]
  resources: [virtualmachinememories, hypervisors]
  verbs: [get, list, watch]
# Status is written with a JSON merge patch on the subresource; never PUT, never spec.
- apiGroups: [vmmem.io]
  resources: [virtualmachinememories/status, hypervisors/status]
  verbs: [patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{- define "vmmem.subject" -}}
- kind: ServiceAccount
  name: {{ include "vmmem.fullname" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}
