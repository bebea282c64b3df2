{{/* Names, labels and the service's environment, shared by the templates. */}}

{{- define "budeval.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "budeval.fullname" -}}
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

{{- define "budeval.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "budeval.selectorLabels" -}}
app.kubernetes.io/name: {{ include "budeval.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "budeval.labels" -}}
helm.sh/chart: {{ include "budeval.chart" . }}
{{ include "budeval.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: budeval
{{- end }}

{{- define "budeval.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "budeval.runnerImage" -}}
{{- printf "%s:%s" .Values.runner.image.repository .Values.runner.image.tag }}
{{- end }}

{{- define "budeval.controllerServiceAccount" -}}
{{- default (printf "%s-controller" (include "budeval.fullname" .) | trunc 63 | trimSuffix "-") .Values.serviceAccount.name }}
{{- end }}

{{- define "budeval.runnerServiceAccount" -}}
{{- default (printf "%s-runner" (include "budeval.fullname" .) | trunc 63 | trimSuffix "-") .Values.runner.serviceAccount.name }}
{{- end }}

{{- define "budeval.resultsClaim" -}}
{{- default (printf "%s-results" (include "budeval.fullname" .) | trunc 63 | trimSuffix "-") .Values.results.existingClaim }}
{{- end }}

{{/* The datasets volume's pod volume source (after the volume's name), empty when none is configured. */}}
{{- define "budeval.datasetsSource" -}}
{{- if .Values.datasets.existingClaim }}
persistentVolumeClaim:
  claimName: {{ .Values.datasets.existingClaim }}
  readOnly: true
{{- else if .Values.datasets.hostPath }}
hostPath:
  path: {{ .Values.datasets.hostPath | quote }}
  type: Directory
{{- end }}
{{- end }}

{{/* "true" when the embedded sidecar runs as its own container of the service pod (no daprd). */}}
{{- define "budeval.sidecarContainer" -}}
{{- if and (not .Values.dapr.enabled) (eq .Values.dapr.embeddedSidecar.mode "container") }}true{{ end }}
{{- end }}

{{- define "budeval.storeSecret" -}}
{{- default (printf "%s-clickhouse" (include "budeval.fullname" .) | trunc 63 | trimSuffix "-") .Values.clickhouse.existingSecret }}
{{- end }}

{{- define "budeval.s3Secret" -}}
{{- default (printf "%s-s3" (include "budeval.fullname" .) | trunc 63 | trimSuffix "-") .Values.s3.existingSecret }}
{{- end }}

{{- define "budeval.s3HasCredentials" -}}
{{- if or .Values.s3.existingSecret .Values.s3.accessKey }}true{{ end }}
{{- end }}

{{- define "budeval.apiTokenSecret" -}}
{{- default (printf "%s-api-token" (include "budeval.fullname" .) | trunc 63 | trimSuffix "-") .Values.apiToken.existingSecret }}
{{- end }}

{{- define "budeval.appTokenSecret" -}}
{{- default (printf "%s-app-token" (include "budeval.fullname" .) | trunc 63 | trimSuffix "-") .Values.dapr.appTokenSecret }}
{{- end }}

{{/* "true" when the chart's own DSN is an embedded chDB store (chdb:///path, a folder on the results volume): the
     service opens it alone and migrates it at start, so no hook Job. An existingSecret's DSN is not visible here:
     with a chDB DSN in a Secret, set migrations.enabled=false. */}}
{{- define "budeval.storeIsEmbedded" -}}
{{- if and (not .Values.clickhouse.existingSecret) (hasPrefix "chdb://" .Values.clickhouse.dsn) }}true{{ end }}
{{- end }}

{{/* The Secret the migration hook reads the DSN from: a hook copy when the chart owns the DSN (hooks run before
     the release's own objects exist), else the existing Secret. */}}
{{- define "budeval.migrateStoreSecret" -}}
{{- if .Values.clickhouse.existingSecret }}{{ .Values.clickhouse.existingSecret }}
{{- else }}{{ printf "%s-migrate" (include "budeval.fullname" .) | trunc 63 | trimSuffix "-" }}{{ end }}
{{- end }}

{{/* Settings (budeval/config.py) of the service as BUDEVAL_* variables; secrets only as secretKeyRef. */}}
{{- define "budeval.storeEnv" -}}
- name: BUDEVAL_STORE_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}

{{- define "budeval.s3Env" -}}
- name: BUDEVAL_ARCHIVE_URL
  value: {{ printf "s3://%s?endpoint=%s%s" .Values.s3.bucket .Values.s3.endpoint (ternary (printf "&region=%s" .Values.s3.region) "" (ne .Values.s3.region "")) | quote }}
{{- if include "budeval.s3HasCredentials" . }}
- name: BUDEVAL_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "budeval.s3Secret" . }}
      key: {{ .Values.s3.accessKeyKey }}
- name: BUDEVAL_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "budeval.s3Secret" . }}
      key: {{ .Values.s3.secretKeyKey }}
{{- end }}
{{- end }}

{{- define "budeval.serviceEnv" -}}
- name: BUDEVAL_BACKEND
  value: kubernetes
- name: BUDEVAL_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: BUDEVAL_HOST
  value: "0.0.0.0"
- name: BUDEVAL_PORT
  value: "8080"
- name: BUDEVAL_SIDECAR
  value: {{ ternary "external" "embedded" (or .Values.dapr.enabled (eq (include "budeval.sidecarContainer" .) "true")) }}
{{- if include "budeval.sidecarContainer" . }}
- name: DAPR_GRPC_PORT
  value: "50001"
- name: DAPR_HTTP_PORT
  value: "3500"
{{- end }}
- name: BUDEVAL_DATA_DIR
  value: /var/lib/budeval/data
- name: BUDEVAL_RESULTS_ROOT
  value: {{ .Values.results.mountPath | quote }}
- name: BUDEVAL_RESULTS_PVC
  value: {{ include "budeval.resultsClaim" . }}
{{- if include "budeval.datasetsSource" . }}
- name: BUDEVAL_DATASETS_PVC
  value: {{ .Values.datasets.existingClaim | quote }}
- name: BUDEVAL_DATASETS_HOST_PATH
  value: {{ .Values.datasets.hostPath | quote }}
- name: COMPASS_DATA_CACHE
  value: {{ .Values.datasets.mountPath | quote }}
{{- end }}
{{- if .Values.suites }}
- name: BUDEVAL_SUITES_PATH
  value: /etc/budeval/suites
{{- end }}
- name: BUDEVAL_RUNNER_IMAGE
  value: {{ include "budeval.runnerImage" . | quote }}
- name: BUDEVAL_RUNNER_SERVICE_ACCOUNT
  value: {{ include "budeval.runnerServiceAccount" . }}
- name: BUDEVAL_ENGINE_VERSION
  value: {{ .Values.runner.image.tag | quote }}
- name: BUDEVAL_STORE_LINGER_MS
  value: {{ .Values.clickhouse.lingerMs | quote }}
- name: BUDEVAL_MAX_PARALLEL_RUNS
  value: {{ .Values.runner.maxParallelRuns | quote }}
- name: BUDEVAL_UNSCHEDULABLE_AFTER_S
  value: {{ .Values.runner.unschedulableAfterSeconds | quote }}
- name: BUDEVAL_KUEUE_ADMISSION_TIMEOUT_S
  value: {{ .Values.runner.kueueAdmissionTimeoutSeconds | quote }}
- name: BUDEVAL_DEFAULT_GPU_RESOURCE_NAME
  value: {{ .Values.runner.gpuResourceName | quote }}
- name: BUDEVAL_DEFAULT_NODE_SELECTOR
  value: {{ .Values.runner.nodeSelector | toJson | quote }}
- name: BUDEVAL_DEFAULT_TOLERATIONS
  value: {{ .Values.runner.tolerations | toJson | quote }}
- name: BUDEVAL_DEFAULT_QUEUE
  value: {{ .Values.runner.queue | quote }}
- name: BUDEVAL_DEFAULT_PRIORITY_CLASS
  value: {{ .Values.runner.priorityClassName | quote }}
- name: BUDEVAL_PUBSUB_NAME
  value: {{ .Values.dapr.pubsub.name | quote }}
- name: BUDEVAL_REQUEST_TOPIC
  value: {{ .Values.dapr.requestTopic | quote }}
- name: BUDEVAL_EVENTS_TOPIC
  value: {{ .Values.dapr.eventsTopic | quote }}
- name: BUDEVAL_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: BUDEVAL_RESULTS_GC_INTERVAL_S
  value: {{ .Values.retention.resultsGcIntervalSeconds | quote }}
- name: BUDEVAL_RESULTS_GRACE_S
  value: {{ mul .Values.retention.resultsGraceDays 86400 | quote }}
{{ include "budeval.predictionsTtlEnv" . }}
{{ include "budeval.storeEnv" (dict "secret" (include "budeval.storeSecret" .) "key" .Values.clickhouse.existingSecretKey) }}
{{ include "budeval.s3Env" . }}
- name: BUDEVAL_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "budeval.apiTokenSecret" . }}
      key: {{ .Values.apiToken.existingSecretKey }}
- name: APP_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "budeval.appTokenSecret" . }}
      key: token
- name: BUDEVAL_CREDENTIALS
  value: {{ .Values.security.credentials | toJson | quote }}
- name: BUDEVAL_CREDENTIAL_SOURCE
  value: {{ ternary "secrets" "settings" .Values.security.credentialsFromSecretLabels | quote }}
- name: BUDEVAL_DATASETS_ROOT
  value: {{ .Values.security.datasetsRoot | default (printf "%s/_datasets" .Values.results.mountPath) | quote }}
- name: BUDEVAL_MODELS_ROOT
  value: {{ .Values.security.modelsRoot | default (printf "%s/_models" .Values.results.mountPath) | quote }}
- name: BUDEVAL_ENDPOINT_ALLOWED_NETWORKS
  value: {{ .Values.security.endpointAllowedNetworks | toJson | quote }}
- name: BUDEVAL_DOCS_ENABLED
  value: {{ .Values.security.docs | quote }}
- name: BUDEVAL_METRICS_ACCESS
  value: {{ .Values.security.metrics | quote }}
- name: BUDEVAL_HTTP_READ_TIMEOUT_S
  value: {{ .Values.security.httpReadTimeoutSeconds | quote }}
- name: BUDEVAL_HTTP_MAX_CONNECTIONS
  value: {{ .Values.security.httpMaxConnections | quote }}
{{- end }}

{{- define "budeval.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "budeval.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{- /* The predictions TTL: the service applies it when it starts, the migration Job with `budeval migrate`. */ -}}
{{- define "budeval.predictionsTtlEnv" -}}
- name: BUDEVAL_PREDICTIONS_TTL_S
  value: {{ mul .Values.retention.predictionsTtlDays 86400 | quote }}
{{- end }}
