{{- define "personalai.name" -}}{{ .Release.Name }}-operator{{- end -}}

{{- define "personalai.labels" -}}
app.kubernetes.io/name: personalai
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "personalai.selector" -}}
app.kubernetes.io/name: personalai
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "personalai.image" -}}{{ .repository }}:{{ .tag }}{{- end -}}

{{- /* Binds the operator's ServiceAccount to the Role of its name in .namespace. */}}
{{- define "personalai.roleBinding" -}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ include "personalai.name" .root }}
  namespace: {{ .namespace }}
  labels: {{- include "personalai.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ include "personalai.name" .root }}
subjects:
  - kind: ServiceAccount
    name: {{ include "personalai.name" .root }}
    namespace: {{ .root.Release.Namespace }}
{{- end -}}

{{- /* The API server's addresses as a JSON list of CIDRs: networkPolicy.apiServer.cidrs, else the
`kubernetes` EndpointSlice looked up at install or upgrade (empty under `helm template`). */}}
{{- define "personalai.apiServerCidrs" -}}
{{- $cidrs := .Values.networkPolicy.apiServer.cidrs -}}
{{- if not $cidrs -}}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" -}}
{{- range $slice.endpoints | default list -}}
{{- range .addresses -}}
{{- $cidrs = append $cidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $cidrs -}}
{{- end -}}

{{- define "personalai.gatewaySelector" -}}
app.kubernetes.io/name: personalai
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}
