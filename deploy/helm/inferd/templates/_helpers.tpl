{{- define "inferd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "inferd.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "inferd.labels" -}}
{{ include "inferd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "inferd.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The arguments of `inferd serve` (the word `serve` excepted). */}}
{{- define "inferd.serveArgs" -}}
- --host
- 0.0.0.0
- --allowed-hosts
- {{ .Values.allowedHosts | quote }}
- --http-port
- {{ .Values.service.httpPort | quote }}
- --grpc-port
- {{ .Values.service.grpcPort | quote }}
- --metrics-port
- {{ .Values.service.metricsPort | quote }}
- --model-repository
- {{ .Values.modelRepository.url | default "/models" | quote }}
{{- if .Values.cluster.enabled }}
- --cluster-placement-timeout
- {{ .Values.cluster.placementTimeout | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "inferd.rayTokenSecret" -}}
{{ .Values.cluster.authToken.existingSecret | default (printf "%s-ray-token" (include "inferd.fullname" .)) }}
{{- end -}}

{{/* Ray's token authentication, the same on every Ray node. */}}
{{- define "inferd.rayAuthEnv" -}}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "inferd.rayTokenSecret" . }}
      key: {{ .Values.cluster.authToken.key }}
{{- end -}}

{{- define "inferd.shmVolume" -}}
- name: shm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.cluster.shmSize }}
{{- end -}}
