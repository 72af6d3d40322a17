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

{{/*
The endpoint picker's own labels (inferencePool.endpointPicker.deploy). Its name differs from
the server's, so that the server's selectors (Service, PodDisruptionBudget, InferencePool,
ServiceMonitor) never match the picker's pods or Service.
*/}}
{{- define "llmserve.endpointPickerSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-epp" (include "llmserve.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: endpoint-picker
{{- end }}

{{- define "llmserve.endpointPickerLabels" -}}
helm.sh/chart: {{ include "llmserve.chart" . }}
{{ include "llmserve.endpointPickerSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.inferencePool.endpointPicker.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The most pods the Deployment may run: the autoscaler's maximum, else replicaCount. */}}
{{- define "llmserve.maxPods" -}}
{{- if .Values.keda.enabled }}
{{- .Values.keda.maxReplicas }}
{{- else if .Values.autoscaling.enabled }}
{{- .Values.autoscaling.maxReplicas }}
{{- else }}
{{- .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* [cache] disk_dir: where the KV-cache volume is mounted (kvCacheStorage.enabled). */}}
{{- define "llmserve.kvCacheDir" -}}
/var/cache/llmserve/kv
{{- end }}

{{/*
Refuse a KV-cache volume that several pods would use wrongly: a claim is one folder for every
pod, which only a shared disk tier (disk_shared) may use, and only on storage every node can
write (ReadWriteMany).
*/}}
{{- define "llmserve.validateKvCacheStorage" -}}
{{- $storage := .Values.kvCacheStorage }}
{{- $shared := .Values.config.cache.disk_shared }}
{{- $maxPods := include "llmserve.maxPods" . | int }}
{{- if and $shared (not $storage.enabled) }}
{{- fail "config.cache.disk_shared needs the KV-cache volume: set kvCacheStorage.enabled=true with kvCacheStorage.type=persistentVolumeClaim (a ReadWriteMany claim)" }}
{{- end }}
{{- if $storage.enabled }}
{{- if and $shared (ne $storage.type "persistentVolumeClaim") }}
{{- fail "config.cache.disk_shared needs kvCacheStorage.type=persistentVolumeClaim: an emptyDir is private to its pod, so there is nothing to share" }}
{{- end }}
{{- if eq $storage.type "persistentVolumeClaim" }}
{{- if and (not $shared) (gt $maxPods 1) }}
{{- fail (printf "kvCacheStorage is one claim for up to %d pods: set config.cache.disk_shared=true (its files are then shared safely), or use kvCacheStorage.type=emptyDir for a disk tier per pod" $maxPods) }}
{{- end }}
{{- if and $shared (gt $maxPods 1) (not $storage.persistentVolumeClaim.existingClaim) (not (has "ReadWriteMany" $storage.persistentVolumeClaim.accessModes)) }}
{{- fail (printf "config.cache.disk_shared with up to %d pods needs a ReadWriteMany claim (kvCacheStorage.persistentVolumeClaim.accessModes has %s): a ReadWriteOnce volume attaches to one node only" $maxPods (join ", " $storage.persistentVolumeClaim.accessModes)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A PersistentVolumeClaim "<full name>-<name>" from a persistentVolumeClaim value block
(size, storageClass, accessModes, keep), given as (dict "root" . "name" NAME "claim" BLOCK).
*/}}
{{- define "llmserve.claim" -}}
{{- $claim := .claim }}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "llmserve.fullname" .root }}-{{ .name }}
  labels:
    {{- include "llmserve.labels" .root | nindent 4 }}
  {{- if $claim.keep }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
spec:
  accessModes:
    {{- toYaml $claim.accessModes | nindent 4 }}
  {{- with $claim.storageClass }}
  storageClassName: {{ . | quote }}
  {{- end }}
  resources:
    requests:
      storage: {{ $claim.size | quote }}
{{- end }}
