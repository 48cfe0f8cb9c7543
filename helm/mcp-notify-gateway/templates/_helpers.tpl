{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "mcpgw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; component names append to it, so leave room for "-gateway". */}}
{{- define "mcpgw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mcpgw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "mcpgw.labels" -}}
helm.sh/chart: {{ include "mcpgw.chart" . }}
{{ include "mcpgw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mcp-notify-gateway
{{- end -}}

{{- define "mcpgw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcpgw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels and selector of one component: (dict "ctx" $ "component" "gateway"). */}}
{{- define "mcpgw.componentLabels" -}}
{{ include "mcpgw.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mcpgw.componentSelector" -}}
{{ include "mcpgw.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mcpgw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mcpgw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mcpgw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Redis URL when it is not read from a Secret. */}}
{{- define "mcpgw.redisUrl" -}}
{{- if .Values.redis.url -}}
{{- .Values.redis.url -}}
{{- else -}}
{{- printf "redis://%s-redis:6379" (include "mcpgw.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Refuses contradictory values, once, from every template that includes it. */}}
{{- define "mcpgw.validate" -}}
{{- $external := or .Values.redis.url .Values.redis.existingSecret.name -}}
{{- if and $external .Values.redis.bundled.enabled -}}
{{- fail "redis: set either redis.url / redis.existingSecret.name (external Redis) or redis.bundled.enabled, not both" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "sentinel") (not $external) -}}
{{- fail "redis: mode sentinel needs redis.url (or redis.existingSecret.name) listing the sentinels; the bundled Redis is a single node" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "cluster") (not $external) -}}
{{- fail "redis: mode cluster needs redis.url (or redis.existingSecret.name) listing seed nodes of a Redis Cluster; the bundled Redis is a single node" -}}
{{- end -}}
{{- if and (not $external) (not .Values.redis.bundled.enabled) -}}
{{- fail "redis: no Redis configured: set redis.url (or redis.existingSecret.name), or enable redis.bundled" -}}
{{- end -}}
{{- if and .Values.auth.tokens .Values.auth.existingSecret.name -}}
{{- fail "auth: set auth.tokens or auth.existingSecret.name, not both" -}}
{{- end -}}
{{- range $c := list "gateway" "worker" -}}
{{- $v := index $.Values $c -}}
{{- if le (int $v.terminationGracePeriodSeconds) (add $v.preStopSleepSeconds $v.drainTimeoutSecs | int) -}}
{{- fail (printf "%s.terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + drainTimeoutSecs (%v), or the kubelet kills pods mid-drain" $c $v.terminationGracePeriodSeconds (add $v.preStopSleepSeconds $v.drainTimeoutSecs)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Environment from Secrets: the Redis URL (both components) and the auth tokens (the
gateway only: workers never see client credentials). (dict "ctx" $ "component" "gateway") */}}
{{- define "mcpgw.secretEnv" -}}
{{- $v := .ctx.Values -}}
{{- if $v.redis.existingSecret.name }}
- name: MCPGW_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.existingSecret.name }}
      key: {{ $v.redis.existingSecret.key }}
{{- end }}
{{- if eq .component "gateway" }}
{{- if $v.auth.tokens }}
- name: MCPGW_AUTH_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ include "mcpgw.fullname" .ctx }}-auth
      key: tokens
{{- else if $v.auth.existingSecret.name }}
- name: MCPGW_AUTH_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ $v.auth.existingSecret.name }}
      key: {{ $v.auth.existingSecret.key }}
{{- end }}
{{- end }}
{{- end -}}

{{/* An HPA for one component: (dict "ctx" $ "component" "gateway" "values" .Values.gateway). */}}
{{- define "mcpgw.hpa" -}}
{{- $a := .values.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "mcpgw.fullname" .ctx }}-{{ .component }}
  labels:
    {{- include "mcpgw.componentLabels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "mcpgw.fullname" .ctx }}-{{ .component }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    {{- if $a.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- end }}
    {{- if $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ $a.targetMemoryUtilizationPercentage }}
    {{- end }}
    {{- with $a.extraMetrics }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* A PodDisruptionBudget for one component. */}}
{{- define "mcpgw.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "mcpgw.fullname" .ctx }}-{{ .component }}
  labels:
    {{- include "mcpgw.componentLabels" . | nindent 4 }}
spec:
  {{- if hasKey .values.pdb "minAvailable" }}
  minAvailable: {{ .values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "mcpgw.componentSelector" . | nindent 6 }}
{{- end -}}

{{/* The key of the policy file in its ConfigMap. */}}
{{- define "mcpgw.policyKey" -}}
{{- if .Values.policy.existingConfigMap.name -}}
{{- .Values.policy.existingConfigMap.key -}}
{{- else -}}
policy.toml
{{- end -}}
{{- end }}
