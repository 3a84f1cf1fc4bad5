{{/* Names */}}
{{- define "imos.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "imos.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "imos.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "imos.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imos-serve
{{- end -}}

{{/* selector labels of one component: include "imos.selector" (list . "gateway") */}}
{{- define "imos.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "imos.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "imos.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "imos.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "imos.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end -}}

{{- define "imos.gatewayImage" -}}
{{ printf "%s:%s" .Values.image.repository (default .Values.image.tag .Values.gateway.imageTag) }}
{{- end -}}

{{- define "imos.redisSecretName" -}}
{{- default (printf "%s-redis" (include "imos.fullname" .)) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{- define "imos.redisSecretKey" -}}
{{- if .Values.redis.auth.existingSecret -}}{{ .Values.redis.auth.existingSecretKey }}{{- else -}}redis-password{{- end -}}
{{- end -}}

{{- define "imos.apiKeysSecretName" -}}
{{- default (printf "%s-api-keys" (include "imos.fullname" .)) .Values.apiKeys.existingSecret -}}
{{- end -}}

{{- define "imos.apiKeysEnabled" -}}
{{- if or .Values.apiKeys.existingSecret .Values.apiKeys.tenants -}}true{{- end -}}
{{- end -}}

{{- define "imos.scheme" -}}
{{- if .Values.tls.existingSecret -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* Environment shared by gateways and workers: Redis, API keys, TLS (settings come from envFrom) */}}
{{- define "imos.env" -}}
{{- if .Values.redis.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "imos.redisSecretName" . }}
      key: {{ include "imos.redisSecretKey" . }}
- name: IMOS_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s-redis:6379/0" (include "imos.fullname" .) | quote }}
{{- end }}
{{- if include "imos.apiKeysEnabled" . }}
- name: IMOS_API_KEYS_FILE
  value: /etc/imos/api-keys/api-keys.yaml
{{- end }}
{{- if .Values.tls.existingSecret }}
- name: IMOS_TLS_CERT_FILE
  value: /etc/imos/tls/tls.crt
- name: IMOS_TLS_KEY_FILE
  value: /etc/imos/tls/tls.key
{{- if .Values.tls.clientCA }}
- name: IMOS_TLS_CLIENT_CA_FILE
  value: /etc/imos/tls/ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{- define "imos.envFrom" -}}
- configMapRef:
    name: {{ include "imos.fullname" . }}
{{- if or .Values.secretConfig .Values.redis.url }}
- secretRef:
    name: {{ include "imos.fullname" . }}
{{- end }}
{{- if .Values.existingSecret }}
- secretRef:
    name: {{ .Values.existingSecret }}
{{- end }}
{{- end -}}

{{/* Volumes shared by gateways and workers */}}
{{- define "imos.volumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- if .Values.modelRepo.existingClaim }}
- name: model-repo
  persistentVolumeClaim:
    claimName: {{ .Values.modelRepo.existingClaim }}
    readOnly: true
{{- end }}
{{- if include "imos.apiKeysEnabled" . }}
- name: api-keys
  secret:
    secretName: {{ include "imos.apiKeysSecretName" . }}
    items:
      - key: api-keys.yaml
        path: api-keys.yaml
{{- end }}
{{- if .Values.tls.existingSecret }}
- name: tls
  secret:
    secretName: {{ .Values.tls.existingSecret }}
{{- end }}
{{- end -}}

{{- define "imos.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/imos
{{- if .Values.modelRepo.existingClaim }}
- name: model-repo
  mountPath: /opt/imos/model_repo
  readOnly: true
  {{- with .Values.modelRepo.subPath }}
  subPath: {{ . }}
  {{- end }}
{{- end }}
{{- if include "imos.apiKeysEnabled" . }}
- name: api-keys
  mountPath: /etc/imos/api-keys
  readOnly: true
{{- end }}
{{- if .Values.tls.existingSecret }}
- name: tls
  mountPath: /etc/imos/tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "imos.podAnnotations" -}}
{{- $ := index . 0 -}}
{{- $extra := index . 1 -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") $ | sha256sum }}
checksum/secret-config: {{ toJson (list $.Values.secretConfig $.Values.apiKeys.tenants $.Values.redis.url) | sha256sum }}
{{- if $.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $.Values.gateway.service.httpPort | quote }}
prometheus.io/path: /metrics
prometheus.io/scheme: {{ include "imos.scheme" $ | lower }}
{{- end }}
{{- with $extra }}
{{ toYaml . }}
{{- end }}
{{- end -}}
