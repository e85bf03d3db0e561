{{- define "flakehouse.labels" -}}
app.kubernetes.io/name: flakehouse
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "flakehouse.selector" -}}
app.kubernetes.io/name: flakehouse
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "flakehouse.address" -}}
{{ .root.Release.Name }}-{{ .name }}:{{ .root.Values.default.grpcPort }}
{{- end -}}

{{/* Environment every service reads: FLAKEHOUSE_<SERVICE>_* */}}
{{- define "flakehouse.env" -}}
{{- $p := printf "FLAKEHOUSE_%s_" (upper .name) -}}
- {name: {{ $p }}HOST, value: "0.0.0.0"}
- {name: {{ $p }}PORT, value: {{ .cfg.grpcPort | quote }}}
- {name: {{ $p }}METRICS_HOST, value: "0.0.0.0"}
- {name: {{ $p }}METRICS_PORT, value: {{ .cfg.metricsPort | quote }}}
{{- if ne .name "query" }}
- {name: {{ $p }}KAFKA_BOOTSTRAP, value: {{ .root.Values.kafka.bootstrapServers | quote }}}
- {name: {{ $p }}TOPIC_PREFIX, value: {{ .root.Values.kafka.topicPrefix | quote }}}
{{- end }}
{{- if or (eq .name "storage") (eq .name "query") }}
- {name: {{ $p }}REPLICATION_ADDRESS, value: {{ include "flakehouse.address" (dict "root" .root "name" "replication") | quote }}}
{{- end }}
{{- if or (eq .name "storage") (eq .name "ingest") }}
- {name: {{ $p }}QUOTA_ADDRESS, value: {{ include "flakehouse.address" (dict "root" .root "name" "quota") | quote }}}
{{- end }}
{{- if eq .name "ingest" }}
- {name: {{ $p }}DEFAULT_PARTITIONS, value: {{ .root.Values.partitionsPerDataset | quote }}}
{{- end }}
{{- if eq .name "replication" }}
- {name: {{ $p }}REPLICATION_FACTOR, value: {{ .root.Values.replicationFactor | quote }}}
{{- end }}
{{- end -}}

{{- define "flakehouse.container" -}}
- name: {{ .name }}
  image: "{{ .root.Values.image.repository }}/{{ .name }}:{{ .root.Values.image.tag }}"
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  ports:
    - {name: grpc, containerPort: {{ .cfg.grpcPort }}}
    - {name: metrics, containerPort: {{ .cfg.metricsPort }}}
  readinessProbe:
    grpc: {port: {{ .cfg.grpcPort }}}
    periodSeconds: 5
  # Liveness asks only whether the process answers: gRPC health is NOT_SERVING while a
  # storage node catches up, which must not get it restarted.
  livenessProbe:
    tcpSocket: {port: grpc}
    initialDelaySeconds: 30
    periodSeconds: 10
    failureThreshold: 6
  resources: {{- toYaml .cfg.resources | nindent 4 }}
  env:
    {{- include "flakehouse.env" . | nindent 4 }}
{{- end -}}
