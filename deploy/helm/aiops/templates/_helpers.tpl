{{/* Names and labels. */}}
{{- define "aiops.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aiops.name" -}}
{{- printf "%s-%s" (include "aiops.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aiops.labels" -}}
app.kubernetes.io/name: aiops
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "aiops.releaseLabels" . }}
{{- end -}}

{{/* Labels beyond the selector's. */}}
{{- define "aiops.releaseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "aiops.selectorLabels" -}}
app.kubernetes.io/name: aiops
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "aiops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "aiops.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "aiops.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
aiops.config renders one role's aiops.yaml: what the chart derives from
its values, then .Values.config, then the role's own config over it.
*/}}
{{- define "aiops.config" -}}
{{- $v := .root.Values -}}
{{- $server := dict "http_addr" ":9090" -}}
{{- if $v.adminToken.existingSecret -}}
{{- $_ := set $server "admin_token_file" "/etc/aiops/secrets/admin/token" -}}
{{- end -}}
{{- $cfg := dict "server" $server -}}
{{- $ch := dict "addresses" $v.clickhouse.addresses "database" $v.clickhouse.database "username" $v.clickhouse.username -}}
{{- if $v.clickhouse.passwordSecret.name -}}
{{- $_ := set $ch "password_file" "/etc/aiops/secrets/clickhouse/password" -}}
{{- end -}}
{{- if $v.clickhouse.cluster -}}
{{- $_ := set $ch "cluster" $v.clickhouse.cluster -}}
{{- end -}}
{{- $alerting := dict "rule_files" (list "/etc/aiops/rules/*.yml") "alertmanager_config_file" "/etc/aiops/alertmanager/alertmanager.yml" "external_url" $v.externalURL -}}
{{- $otlp := dict "grpc_endpoint" ":4317" "http_endpoint" ":4318" "auth" "token" -}}
{{- if eq .component "all-in-one" -}}
{{- $_ := set $cfg "role" "all-in-one" -}}
{{- $_ := set $cfg "storage" (dict "backend" "embedded" "embedded" (dict "data_dir" "/var/lib/aiops")) -}}
{{- $_ := set $cfg "collector" (dict "otlp" $otlp) -}}
{{- $_ := set $cfg "alerting" $alerting -}}
{{- else if eq .component "collector" -}}
{{- $_ := set $cfg "role" "collector" -}}
{{- $_ := set $cfg "storage" (dict "embedded" (dict "data_dir" "/var/lib/aiops")) -}}
{{- $_ := set $cfg "collector" (dict "otlp" $otlp "kafka" (dict "brokers" $v.kafka.brokers)) -}}
{{- else if eq .component "ingester" -}}
{{- $_ := set $cfg "role" "ingester" -}}
{{- $_ := set $cfg "storage" (dict "backend" "clickhouse" "embedded" (dict "data_dir" "/var/lib/aiops") "clickhouse" $ch) -}}
{{- $_ := set $cfg "collector" (dict "exporter" "store" "kafka" (dict "brokers" $v.kafka.brokers "group_id" $v.kafka.groupId)) -}}
{{- else if eq .component "query" -}}
{{- $_ := set $cfg "role" "all-in-one" -}}
{{- $_ := set $cfg "storage" (dict "backend" "clickhouse" "embedded" (dict "data_dir" "/var/lib/aiops") "clickhouse" $ch) -}}
{{- if gt (int $v.query.replicas) 1 -}}
{{- /* An HA pair (docs/SCALING.md): the replicas notify once through
       Alertmanager's gossip (every pod by its headless name, itself
       included) and write incidents and run remediation on the holder
       of the lease in ClickHouse. */ -}}
{{- $name := include "aiops.name" . -}}
{{- $peers := list -}}
{{- range $i := until (int $v.query.replicas) -}}
{{- $peers = append $peers (printf "%s-%d.%s-headless:9094" $name $i $name) -}}
{{- end -}}
{{- $_ := set $alerting "cluster" (dict "listen_address" "0.0.0.0:9094" "peers" $peers) -}}
{{- $_ := set $cfg "ha" (dict "lease" "store") -}}
{{- end -}}
{{- $_ := set $cfg "alerting" $alerting -}}
{{- end -}}
{{- $roleValues := index $v (include "aiops.valuesKey" .component) -}}
{{- $merged := mustMergeOverwrite $cfg (deepCopy $v.config) (deepCopy $roleValues.config) -}}
{{- toYaml $merged -}}
{{- end -}}

{{- define "aiops.valuesKey" -}}
{{- if eq . "all-in-one" -}}allInOne{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/*
aiops.pod renders the pod template of one component: .root, .component,
.dataVolume (the name of the volume mounted at /var/lib/aiops).
*/}}
{{- define "aiops.pod" -}}
{{- $v := .root.Values -}}
{{- $values := index $v (include "aiops.valuesKey" .component) -}}
metadata:
  labels:
    {{- include "aiops.selectorLabels" . | nindent 4 }}
    {{- include "aiops.releaseLabels" .root | nindent 4 }}
  annotations:
    checksum/config: {{ include "aiops.config" . | sha256sum }}
spec:
  serviceAccountName: {{ include "aiops.serviceAccountName" .root }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: aiops
      image: {{ include "aiops.image" .root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: ["serve", "--config", "/etc/aiops/config/aiops.yaml"]
      ports:
        - {name: http, containerPort: 9090, protocol: TCP}
        {{- if has .component (list "all-in-one" "collector") }}
        - {name: otlp-grpc, containerPort: 4317, protocol: TCP}
        - {name: otlp-http, containerPort: 4318, protocol: TCP}
        {{- end }}
        {{- if and (eq .component "query") (gt (int $v.query.replicas) 1) }}
        - {name: gossip-tcp, containerPort: 9094, protocol: TCP}
        - {name: gossip-udp, containerPort: 9094, protocol: UDP}
        {{- end }}
      livenessProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 15
        failureThreshold: 4
      readinessProbe:
        httpGet: {path: /readyz, port: http}
        periodSeconds: 5
      startupProbe:
        httpGet: {path: /healthz, port: http}
        periodSeconds: 5
        failureThreshold: 60
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      {{- with $values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        - {name: config, mountPath: /etc/aiops/config, readOnly: true}
        - {name: {{ .dataVolume }}, mountPath: /var/lib/aiops}
        - {name: tmp, mountPath: /tmp}
        {{- if $v.adminToken.existingSecret }}
        - {name: admin-token, mountPath: /etc/aiops/secrets/admin, readOnly: true}
        {{- end }}
        {{- if and $v.clickhouse.passwordSecret.name (has .component (list "ingester" "query")) }}
        - {name: clickhouse-password, mountPath: /etc/aiops/secrets/clickhouse, readOnly: true}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "aiops.name" . }}
    - name: tmp
      emptyDir: {}
    {{- if ne .dataVolume "data" }}
    - name: {{ .dataVolume }}
      emptyDir: {}
    {{- end }}
    {{- if $v.adminToken.existingSecret }}
    - name: admin-token
      secret:
        secretName: {{ $v.adminToken.existingSecret }}
        # aiops refuses an admin token that others can read.
        defaultMode: 0400
        items:
          - {key: {{ $v.adminToken.key }}, path: token}
    {{- end }}
    {{- if and $v.clickhouse.passwordSecret.name (has .component (list "ingester" "query")) }}
    - name: clickhouse-password
      secret:
        secretName: {{ $v.clickhouse.passwordSecret.name }}
        defaultMode: 0400
        items:
          - {key: {{ $v.clickhouse.passwordSecret.key }}, path: password}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The components the values select. */}}
{{- define "aiops.components" -}}
{{- if eq .Values.mode "allInOne" -}}
all-in-one
{{- else if eq .Values.mode "scaled" -}}
{{- if not .Values.adminToken.existingSecret -}}
{{- fail "adminToken.existingSecret: the scaled mode needs the admin token in a Secret: the collectors authenticate OTLP clients with it" -}}
{{- end -}}
collector ingester query
{{- else -}}
{{- fail (printf "mode: must be allInOne or scaled, got %q" .Values.mode) -}}
{{- end -}}
{{- end -}}
