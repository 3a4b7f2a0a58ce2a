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
