{{/* Names and labels, the usual way. */}}
{{- define "llmserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "llmserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llmserve.labels" -}}
helm.sh/chart: {{ include "llmserve.chart" . }}
{{ include "llmserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llmserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: tag defaults to appVersion, with "-cuda" for the CUDA variant. */}}
{{- define "llmserve.image" -}}
{{- $suffix := ternary "-cuda" "" (eq .Values.image.variant "cuda") }}
{{- $tag := .Values.image.tag | default (printf "%s%s" .Chart.AppVersion $suffix) }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* The Secret holding the API key, or "" when /v1 is left open. */}}
{{- define "llmserve.apiKeySecret" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecret }}
{{- else if .Values.auth.apiKey }}
{{- include "llmserve.fullname" . }}
{{- end }}
{{- end }}

{{- define "llmserve.apiKeySecretKey" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecretKey }}
{{- else }}
{{- "api-key" }}
{{- end }}
{{- end }}

{{/*
[model] model_path: model.path, else "REPO:PATTERN" of the first pulled model (llmserve
resolves it in its store, LLM_ENGINE_MODELS_DIR), else "" (the image's demo model).
*/}}
{{- define "llmserve.modelPath" -}}
{{- if .Values.model.path }}
{{- .Values.model.path }}
{{- else if and .Values.model.pull.enabled .Values.model.pull.models }}
{{- $first := first .Values.model.pull.models }}
{{- printf "%s:%s" $first.repo $first.file }}
{{- end }}
{{- end }}

{{/* Whole CPU cores in a Kubernetes quantity ("4", 4, 2.5, "1500m"), at least 1. */}}
{{- define "llmserve.wholeCores" -}}
{{- $quantity := toString . }}
{{- $cores := 0 }}
{{- if hasSuffix "m" $quantity }}
{{- $cores = div (trimSuffix "m" $quantity | atoi) 1000 }}
{{- else }}
{{- $cores = $quantity | float64 | floor | int }}
{{- end }}
{{- max 1 $cores }}
{{- end }}

{{/* [model] n_threads: the configured value, else the CPU limit's (or request's) whole cores. */}}
{{- define "llmserve.nThreads" -}}
{{- $resources := .Values.resources | default dict }}
{{- $limits := $resources.limits | default dict }}
{{- $requests := $resources.requests | default dict }}
{{- if not (kindIs "invalid" .Values.config.model.n_threads) }}
{{- .Values.config.model.n_threads }}
{{- else if hasKey $limits "cpu" }}
{{- include "llmserve.wholeCores" $limits.cpu }}
{{- else if hasKey $requests "cpu" }}
{{- include "llmserve.wholeCores" $requests.cpu }}
{{- end }}
{{- end }}

{{/* The endpoint picker's Service the InferencePool points the gateway at. */}}
{{- define "llmserve.endpointPicker" -}}
{{- .Values.inferencePool.endpointPicker.service | default (printf "%s-epp" (include "llmserve.fullname" .)) }}
{{- end }}

{{/*
The Prometheus query of this release's waiting requests (KEDA): the namespace and pod labels
are those both a ServiceMonitor and annotation-based pod scraping attach.
*/}}
{{- define "llmserve.waitingQuery" -}}
{{- .Values.keda.prometheus.query | default (printf "sum(llm_engine_requests_waiting{namespace=%q, pod=~%q})" .Release.Namespace (printf "%s-.*" (include "llmserve.fullname" .))) }}
{{- end }}
