{{- /*
Every component template gets a context: dict "root" $ "name" <component> "cfg" <settings>,
where cfg is `default` merged with `components.<name>` (flakehouse.config).
*/ -}}

{{- define "flakehouse.config" -}}
{{- $override := index .root.Values.components .name | default dict -}}
{{- toYaml (mergeOverwrite (deepCopy .root.Values.default) (deepCopy $override)) -}}
{{- end -}}

{{- define "flakehouse.fullname" -}}
{{ .root.Release.Name }}-{{ .name }}
{{- end -}}

{{- define "flakehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | quote }}
app.kubernetes.io/name: flakehouse
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .name }}
app.kubernetes.io/part-of: flakehouse
{{- end -}}

{{- define "flakehouse.selector" -}}
app.kubernetes.io/name: flakehouse
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "flakehouse.image" -}}
{{- if .cfg.image -}}
{{ .cfg.image }}
{{- else -}}
{{ .root.Values.image.repository }}/{{ .name }}:{{ .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "flakehouse.address" -}}
{{ .root.Release.Name }}-{{ .name }}:{{ .root.Values.default.grpcPort }}
{{- end -}}

{{- /*
The names a certificate must carry (JSON list): every component's Service in the forms its
callers may use (`fh-quota` is what the services are given, flakehouse.address), the storage
pods under their headless Service (`<pod>.fh-storage.<ns>.svc`, their advertised address) as
wildcards, and localhost for port-forwards. No `*.fh-storage` wildcard: gRPC and OpenSSL accept
a wildcard only with two labels after it, so it would match nothing.
*/ -}}
{{- define "flakehouse.tlsDnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- $domain := .Values.tls.clusterDomain -}}
{{- $names := list -}}
{{- range $name := keys .Values.components | sortAlpha -}}
{{- $service := include "flakehouse.fullname" (dict "root" $ "name" $name) -}}
{{- $names = concat $names (list $service (printf "%s.%s" $service $ns) (printf "%s.%s.svc" $service $ns) (printf "%s.%s.svc.%s" $service $ns $domain)) -}}
{{- if eq $name "storage" -}}
{{- $names = concat $names (list (printf "*.%s.%s" $service $ns) (printf "*.%s.%s.svc" $service $ns) (printf "*.%s.%s.svc.%s" $service $ns $domain)) -}}
{{- end -}}
{{- end -}}
{{- toJson (append $names "localhost") -}}
{{- end -}}

{{- define "flakehouse.tlsSecretName" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{ .Values.tls.existingSecret }}
{{- else -}}
{{ include "flakehouse.fullname" (dict "root" . "name" "tls") }}
{{- end -}}
{{- end -}}

{{- /*
tls.mode=generate: the Secret's data (YAML), computed once per render and kept in .Values, so
that the Secret and the pods' checksum annotation see the same certificate. An installed
Secret (lookup; `helm template` has no cluster and always generates) is reused as it is: an
upgrade never rotates it. The CA's key is discarded after signing.
*/ -}}
{{- define "flakehouse.tlsGenerated" -}}
{{- if not (hasKey .Values "__tlsGenerated") -}}
{{- $name := include "flakehouse.tlsSecretName" . -}}
{{- $installed := lookup "v1" "Secret" .Release.Namespace $name -}}
{{- $data := dict -}}
{{- if and $installed $installed.data (hasKey $installed.data "ca.crt") (hasKey $installed.data "tls.crt") (hasKey $installed.data "tls.key") -}}
{{- $data = pick $installed.data "ca.crt" "tls.crt" "tls.key" -}}
{{- else -}}
{{- $ca := genCA (printf "flakehouse CA %s/%s" .Release.Namespace .Release.Name | trunc 64) 3650 -}}
{{- $cert := genSignedCert (printf "flakehouse %s/%s" .Release.Namespace .Release.Name | trunc 64) (list "127.0.0.1") (include "flakehouse.tlsDnsNames" . | fromJsonArray) 825 $ca -}}
{{- $data = dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) -}}
{{- /* The console's own certificate, now or never: the CA's key is gone after this render. */ -}}
{{- if include "flakehouse.consoleEnabled" . -}}
{{- $console := genSignedCert (printf "flakehouse console %s/%s" .Release.Namespace .Release.Name | trunc 64) (list "127.0.0.1") (include "flakehouse.consoleDnsNames" . | fromJsonArray) 825 $ca -}}
{{- $_ := set .Values "__consoleTlsSigned" (dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($console.Cert | b64enc) "tls.key" ($console.Key | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "__tlsGenerated" $data -}}
{{- end -}}
{{- toYaml (get .Values "__tlsGenerated") -}}
{{- end -}}

{{- /*
Non-empty when the console is rendered (console.enabled). A release upgraded with
--reuse-values from a chart without the console has no `console` value and renders none.
*/ -}}
{{- define "flakehouse.consoleEnabled" -}}
{{- if (.Values.console | default dict).enabled -}}
yes
{{- end -}}
{{- end -}}

{{- /* The console's settings: `default` merged with `console`, less its switches. */ -}}
{{- define "flakehouse.consoleConfig" -}}
{{- $own := omit (deepCopy .Values.console) "enabled" "tls" "ingress" -}}
{{- toYaml (mergeOverwrite (deepCopy .Values.default) $own) -}}
{{- end -}}

{{- /*
The names the console's certificate carries (JSON list): its Service in the forms a browser
behind a port-forward, an Ingress controller or a pod may use, and the Ingress's host.
*/ -}}
{{- define "flakehouse.consoleDnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- $service := include "flakehouse.fullname" (dict "root" . "name" "console") -}}
{{- $svc := printf "%s.%s.svc" $service $ns -}}
{{- $names := list $service (printf "%s.%s" $service $ns) $svc (printf "%s.%s" $svc .Values.tls.clusterDomain) -}}
{{- with dig "ingress" "host" "" .Values.console -}}
{{- $names = append $names . -}}
{{- end -}}
{{- toJson (append $names "localhost") -}}
{{- end -}}

{{- define "flakehouse.consoleTlsSecretName" -}}
{{- with dig "tls" "existingSecret" "" .Values.console -}}
{{ . }}
{{- else -}}
{{ include "flakehouse.fullname" (dict "root" . "name" "console-tls") }}
{{- end -}}
{{- end -}}

{{- /*
tls.mode=generate: the data of <release>-console-tls (YAML; empty when there is none), once per
render. Signed in this render when the CA is new (an install, or <release>-tls deleted to
rotate: the console follows the new CA); else the installed Secret, reused as it is. A CA made
before the console was enabled signed no certificate for it, and cannot now: then empty.
*/ -}}
{{- define "flakehouse.consoleTlsGenerated" -}}
{{- if not (hasKey .Values "__consoleTlsGenerated") -}}
{{- $_ := include "flakehouse.tlsGenerated" . -}}
{{- $data := dict -}}
{{- if hasKey .Values "__consoleTlsSigned" -}}
{{- $data = get .Values "__consoleTlsSigned" -}}
{{- else -}}
{{- $installed := lookup "v1" "Secret" .Release.Namespace (include "flakehouse.fullname" (dict "root" . "name" "console-tls")) -}}
{{- if and $installed $installed.data (hasKey $installed.data "tls.crt") (hasKey $installed.data "tls.key") -}}
{{- $data = pick $installed.data "ca.crt" "tls.crt" "tls.key" -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "__consoleTlsGenerated" $data -}}
{{- end -}}
{{- toYaml (get .Values "__consoleTlsGenerated") -}}
{{- end -}}

{{- define "flakehouse.tokensSecretName" -}}
{{- if .Values.tokens.existingSecret -}}
{{ .Values.tokens.existingSecret }}
{{- else -}}
{{ include "flakehouse.fullname" (dict "root" . "name" "tokens") }}
{{- end -}}
{{- end -}}

{{- /* The keys the pods see: admin.token only while the bootstrap admin is on. */ -}}
{{- define "flakehouse.tokenKeys" -}}
{{- if .Values.tokens.admin -}}
{{ toJson (list "service.token" "admin.token") }}
{{- else -}}
{{ toJson (list "service.token") }}
{{- end -}}
{{- end -}}

{{- /*
No tokens.existingSecret: the generated Secret's data (YAML), computed once per render and kept
in .Values, like the certificate, so that the Secret and the checksum annotation agree. Each key
of an installed Secret (lookup; `helm template` has no cluster) is reused, so an upgrade never
changes a token; a key it lacks gets a new one: "fh_" and 43 characters of randAlphaNum, which
draws from crypto/rand; alphanumerics are inside the URL-safe alphabet the services expect, and
43 of 62 symbols are 256 bits.
*/ -}}
{{- define "flakehouse.tokensGenerated" -}}
{{- if not (hasKey .Values "__tokensGenerated") -}}
{{- $installed := lookup "v1" "Secret" .Release.Namespace (include "flakehouse.tokensSecretName" .) -}}
{{- $old := dict -}}
{{- if and $installed $installed.data -}}
{{- $old = $installed.data -}}
{{- end -}}
{{- $data := dict -}}
{{- range $key := include "flakehouse.tokenKeys" . | fromJsonArray -}}
{{- if hasKey $old $key -}}
{{- $_ := set $data $key (get $old $key) -}}
{{- else -}}
{{- $_ := set $data $key (printf "fh_%s" (randAlphaNum 43) | b64enc) -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "__tokensGenerated" $data -}}
{{- end -}}
{{- toYaml (get .Values "__tokensGenerated") -}}
{{- end -}}

{{- define "flakehouse.kafkaBootstrap" -}}
{{- if .Values.kafka.deploy -}}
{{ .Release.Name }}-kafka:9092
{{- else -}}
{{ .Values.kafka.bootstrapServers }}
{{- end -}}
{{- end -}}

{{- /*
Who calls whom on the gRPC port (JSON), the flows of DESIGN.md §1 as the services are wired
(the *_ADDRESS variables of flakehouse.env and flakehouse.consoleEnv, and storage copying
segments from its peers): the network policies open each caller's egress and, inverted, each
callee's ingress from this one table. Replication learns of the storage pods from the
Kubernetes API, and they call it (RegisterNode, Heartbeat, WatchPlacement); it calls quota
(links take an ingest lease per chunk, and it reports token use), and other clusters' ingest
services for links, outside the release (networkPolicy.links.egress). The console, when
enabled, calls query and ingest (uploads from the browser).
*/ -}}
{{- define "flakehouse.calls" -}}
{{- $calls := dict
  "ingest" (list "quota")
  "query" (list "quota" "replication" "storage")
  "quota" (list)
  "replication" (list "quota")
  "storage" (list "quota" "replication" "storage")
-}}
{{- if include "flakehouse.consoleEnabled" . -}}
{{- $_ := set $calls "console" (list "ingest" "query") -}}
{{- end -}}
{{- toJson $calls -}}
{{- end -}}

{{- /*
The ports the components dial Kafka on (JSON list of NetworkPolicyPorts): the chart's Kafka's
9092, else networkPolicy.externalKafka.ports, else every port of kafka.bootstrapServers (the
brokers a bootstrap server names usually listen on the same port).
*/ -}}
{{- define "flakehouse.kafkaPorts" -}}
{{- $ports := list -}}
{{- if .Values.kafka.deploy -}}
{{- $ports = list (dict "port" 9092 "protocol" "TCP") -}}
{{- else if .Values.networkPolicy.externalKafka.ports -}}
{{- $ports = .Values.networkPolicy.externalKafka.ports -}}
{{- else -}}
{{- $numbers := list -}}
{{- range $server := splitList "," .Values.kafka.bootstrapServers -}}
{{- $numbers = append $numbers (splitList ":" $server | last | atoi) -}}
{{- end -}}
{{- range $number := $numbers | uniq -}}
{{- $ports = append $ports (dict "port" $number "protocol" "TCP") -}}
{{- end -}}
{{- end -}}
{{- toJson $ports -}}
{{- end -}}

{{- /*
How the components reach Kafka (JSON): kafka.securityProtocol and the Secrets its SASL and TLS
files come from, read once for the env, the volume and the checks of validate.yaml. dig and
default: values kept from before these keys existed (`helm upgrade --reuse-values`) mean
PLAINTEXT.
*/ -}}
{{- define "flakehouse.kafkaSecurity" -}}
{{- $kafka := .Values.kafka -}}
{{- $protocol := $kafka.securityProtocol | default "PLAINTEXT" -}}
{{- toJson (dict
  "protocol" $protocol
  "sasl" (hasPrefix "SASL_" $protocol)
  "tls" (hasSuffix "SSL" $protocol)
  "mechanism" (dig "sasl" "mechanism" "" $kafka)
  "username" (dig "sasl" "username" "" $kafka)
  "passwordSecret" (dig "sasl" "passwordSecret" "name" "" $kafka)
  "passwordKey" (dig "sasl" "passwordSecret" "key" "password" $kafka)
  "caSecret" (dig "tls" "caSecret" "name" "" $kafka)
  "caKey" (dig "tls" "caSecret" "key" "ca.crt" $kafka)
  "clientCertSecret" (dig "tls" "clientCertSecret" "" $kafka)
) -}}
{{- end -}}

{{- /* Environment every service reads: FLAKEHOUSE_<COMPONENT>_*, README "Configuration". */ -}}
{{- define "flakehouse.env" -}}
{{- $p := printf "FLAKEHOUSE_%s_" (upper .name) -}}
{{- $root := .root -}}
- {name: {{ $p }}HOST, value: "0.0.0.0"}
- {name: {{ $p }}PORT, value: {{ .cfg.grpcPort | quote }}}
- {name: {{ $p }}METRICS_HOST, value: "0.0.0.0"}
- {name: {{ $p }}METRICS_PORT, value: {{ .cfg.metricsPort | quote }}}
- {name: {{ $p }}LOG_LEVEL, value: {{ .cfg.logLevel | quote }}}
- {name: {{ $p }}TLS_CERT_FILE, value: /etc/flakehouse/tls/tls.crt}
- {name: {{ $p }}TLS_KEY_FILE, value: /etc/flakehouse/tls/tls.key}
- {name: {{ $p }}TLS_CA_FILE, value: /etc/flakehouse/tls/ca.crt}
- {name: {{ $p }}SERVICE_TOKEN_FILE, value: /etc/flakehouse/tokens/service.token}
{{- if $root.Values.tokens.admin }}
- {name: {{ $p }}ADMIN_TOKEN_FILE, value: /etc/flakehouse/tokens/admin.token}
{{- end }}
{{- /* Every service follows the token topic, query included, and any of them may be the one
that creates it: the same broker, prefix and topic durability for all. */}}
- {name: {{ $p }}KAFKA_BOOTSTRAP, value: {{ include "flakehouse.kafkaBootstrap" $root | quote }}}
- {name: {{ $p }}TOPIC_PREFIX, value: {{ $root.Values.kafka.topicPrefix | quote }}}
- {name: {{ $p }}TOPIC_REPLICATION_FACTOR, value: {{ $root.Values.kafka.topicReplicationFactor | quote }}}
- {name: {{ $p }}TOPIC_MIN_INSYNC_REPLICAS, value: {{ $root.Values.kafka.minInsyncReplicas | quote }}}
{{- $kafka := include "flakehouse.kafkaSecurity" $root | fromJson }}
- {name: {{ $p }}KAFKA_SECURITY_PROTOCOL, value: {{ $kafka.protocol | quote }}}
{{- if $kafka.sasl }}
- {name: {{ $p }}KAFKA_SASL_MECHANISM, value: {{ $kafka.mechanism | quote }}}
- {name: {{ $p }}KAFKA_SASL_USERNAME, value: {{ $kafka.username | quote }}}
{{- /* The password as a file from its Secret, never as a value (nor a secretKeyRef: a
variable is easier to leak, and the services read secrets from files only). */}}
- {name: {{ $p }}KAFKA_SASL_PASSWORD_FILE, value: /etc/flakehouse/kafka/sasl-password}
{{- end }}
{{- if $kafka.caSecret }}
- {name: {{ $p }}KAFKA_CA_FILE, value: /etc/flakehouse/kafka/ca.crt}
{{- end }}
{{- if $kafka.clientCertSecret }}
- {name: {{ $p }}KAFKA_CERT_FILE, value: /etc/flakehouse/kafka/client.crt}
- {name: {{ $p }}KAFKA_KEY_FILE, value: /etc/flakehouse/kafka/client.key}
{{- end }}
{{- if or (eq .name "storage") (eq .name "query") }}
- {name: {{ $p }}REPLICATION_ADDRESS, value: {{ include "flakehouse.address" (dict "root" $root "name" "replication") | quote }}}
{{- end }}
{{- /* Replication's links respect each dataset's ingest limits (a lease per chunk) and, like
every service, it reports token use; without the address links would not be limited. */}}
{{- if has .name (list "storage" "ingest" "query" "replication") }}
- {name: {{ $p }}QUOTA_ADDRESS, value: {{ include "flakehouse.address" (dict "root" $root "name" "quota") | quote }}}
{{- end }}
{{- if eq .name "ingest" }}
- {name: {{ $p }}DEFAULT_PARTITIONS, value: {{ $root.Values.partitionsPerDataset | quote }}}
{{- end }}
{{- if eq .name "replication" }}
- {name: {{ $p }}REPLICATION_FACTOR, value: {{ $root.Values.replicationFactor | quote }}}
- name: {{ $p }}KUBERNETES_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- {name: {{ $p }}STORAGE_SELECTOR, value: {{ printf "app.kubernetes.io/instance=%s,app.kubernetes.io/component=storage" $root.Release.Name | quote }}}
{{- /* The storage StatefulSet's serviceName: replication dials each pod as
<pod>.<service>.<ns>.svc, a name the certificate carries (an IP is not), as storage advertises
itself below. */}}
- {name: {{ $p }}STORAGE_SERVICE, value: {{ include "flakehouse.fullname" (dict "root" $root "name" "storage") | quote }}}
- {name: {{ $p }}STORAGE_GRPC_PORT, value: {{ $root.Values.default.grpcPort | quote }}}
- {name: {{ $p }}LEASE_NAME, value: {{ printf "%s-replication" $root.Release.Name | quote }}}
- name: {{ $p }}IDENTITY
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
{{- end }}
{{- if eq .name "storage" }}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: {{ $p }}NODE_ID
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- {name: {{ $p }}ADVERTISED_ADDRESS, value: "$(POD_NAME).{{ include "flakehouse.fullname" . }}.$(POD_NAMESPACE).svc:{{ .cfg.grpcPort }}"}
- {name: {{ $p }}DATA_DIR, value: /data}
{{- end }}
{{- range $key, $value := .cfg.env }}
- {name: {{ $p }}{{ $key }}, value: {{ $value | toString | quote }}}
{{- end }}
{{- end -}}

{{- /*
Environment the console reads: FLAKEHOUSE_CONSOLE_*, docs/configuration.md "The console". No
token file and no Kafka: it calls query and ingest with the signed-in user's token. Its TLS
files, when console.tls.enabled, are its own certificate (flakehouse.consoleTlsSecretName).
*/ -}}
{{- define "flakehouse.consoleEnv" -}}
{{- $p := "FLAKEHOUSE_CONSOLE_" -}}
{{- $root := .root -}}
- {name: {{ $p }}HOST, value: "0.0.0.0"}
- {name: {{ $p }}PORT, value: {{ .cfg.httpPort | quote }}}
- {name: {{ $p }}METRICS_HOST, value: "0.0.0.0"}
- {name: {{ $p }}METRICS_PORT, value: {{ .cfg.metricsPort | quote }}}
- {name: {{ $p }}LOG_LEVEL, value: {{ .cfg.logLevel | quote }}}
- {name: {{ $p }}QUERY_ADDRESS, value: {{ include "flakehouse.address" (dict "root" $root "name" "query") | quote }}}
- {name: {{ $p }}INGEST_ADDRESS, value: {{ include "flakehouse.address" (dict "root" $root "name" "ingest") | quote }}}
- {name: {{ $p }}TLS_CA_FILE, value: /etc/flakehouse/tls/ca.crt}
{{- if $root.Values.console.tls.enabled }}
- {name: {{ $p }}TLS_CERT_FILE, value: /etc/flakehouse/tls/tls.crt}
- {name: {{ $p }}TLS_KEY_FILE, value: /etc/flakehouse/tls/tls.key}
{{- end }}
- {name: {{ $p }}COOKIE_SECURE, value: {{ .cfg.cookieSecure | toString | quote }}}
{{- range $key, $value := .cfg.env }}
- {name: {{ $p }}{{ $key }}, value: {{ $value | toString | quote }}}
{{- end }}
{{- end -}}

{{- /* Non-empty when the pods mount Kafka files (/etc/flakehouse/kafka). */ -}}
{{- define "flakehouse.kafkaFiles" -}}
{{- $kafka := include "flakehouse.kafkaSecurity" . | fromJson -}}
{{- if or $kafka.sasl $kafka.caSecret $kafka.clientCertSecret -}}
yes
{{- end -}}
{{- end -}}

{{- /*
What every pod of the release shares, the console's included: a non-root user whose group
(fsGroup) may read the mounted Secrets, the probes on the plaintext metrics port, and a
container that can change nothing but its emptyDirs.
*/ -}}
{{- define "flakehouse.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "flakehouse.probes" -}}
# On the plaintext metrics port: the gRPC ports speak TLS only (the console's
# HTTP port may too), which the kubelet's probes cannot verify. Ready: /readyz
# 200 (a storage node catching up is not). Alive: /healthz, 200 from start to
# shutdown, so catching up never restarts a pod.
readinessProbe:
  httpGet: {path: /readyz, port: metrics}
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  httpGet: {path: /healthz, port: metrics}
  initialDelaySeconds: 10
  periodSeconds: 10
  failureThreshold: 6
{{- end -}}

{{- define "flakehouse.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities: {drop: [ALL]}
{{- end -}}

{{- /* Replicas of a stateless component spread over nodes, when there are several. */ -}}
{{- define "flakehouse.spread" -}}
{{- if gt (int .cfg.replicas) 1 -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {{- include "flakehouse.selector" . | nindent 8 }}
{{- end -}}
{{- end -}}

{{- define "flakehouse.podSpec" -}}
{{ include "flakehouse.podSecurityContext" . }}
{{- if eq .name "replication" }}
serviceAccountName: {{ include "flakehouse.fullname" . }}
{{- else }}
automountServiceAccountToken: false
{{- end }}
{{- with .cfg.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .cfg.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- if eq .name "storage" }}
# No two storage pods on one node: a partition's replicas are on distinct storage nodes, so
# they are on distinct Kubernetes nodes too. Spread over zones when the cluster has them.
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels: {{- include "flakehouse.selector" . | nindent 12 }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {{- include "flakehouse.selector" . | nindent 8 }}
{{- else }}
{{- with include "flakehouse.spread" . }}
{{ . }}
{{- end }}
{{- end }}
terminationGracePeriodSeconds: 30
containers:
  - name: {{ .name }}
    image: {{ include "flakehouse.image" . | quote }}
    imagePullPolicy: {{ .root.Values.image.pullPolicy }}
    ports:
      - {name: grpc, containerPort: {{ .cfg.grpcPort }}, protocol: TCP}
      - {name: metrics, containerPort: {{ .cfg.metricsPort }}, protocol: TCP}
    {{- include "flakehouse.probes" . | nindent 4 }}
    resources: {{- toYaml .cfg.resources | nindent 6 }}
    {{- include "flakehouse.containerSecurityContext" . | nindent 4 }}
    env: {{- include "flakehouse.env" . | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: tls, mountPath: /etc/flakehouse/tls, readOnly: true}
      - {name: tokens, mountPath: /etc/flakehouse/tokens, readOnly: true}
      {{- if include "flakehouse.kafkaFiles" .root }}
      - {name: kafka, mountPath: /etc/flakehouse/kafka, readOnly: true}
      {{- end }}
      {{- if eq .name "storage" }}
      - {name: data, mountPath: /data}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  # Readable by the pod's group (fsGroup) only: the key is in it.
  - name: tls
    secret:
      secretName: {{ include "flakehouse.tlsSecretName" .root }}
      defaultMode: 0440
  # The same: readable by the pod's group only.
  - name: tokens
    secret:
      secretName: {{ include "flakehouse.tokensSecretName" .root }}
      defaultMode: 0440
      {{- if not .root.Values.tokens.admin }}
      # Only the services' token: with the bootstrap admin off, no pod holds its secret, even
      # when a Secret of the user's still has it.
      items:
        - {key: service.token, path: service.token}
      {{- end }}
  {{- $kafka := include "flakehouse.kafkaSecurity" .root | fromJson }}
  {{- if include "flakehouse.kafkaFiles" .root }}
  # Kafka's SASL password and TLS files, from the user's Secrets, under the names the
  # KAFKA_*_FILE variables give; readable by the pod's group only.
  - name: kafka
    projected:
      defaultMode: 0440
      sources:
        {{- if $kafka.sasl }}
        - secret:
            name: {{ $kafka.passwordSecret }}
            items: [{key: {{ $kafka.passwordKey | quote }}, path: sasl-password}]
        {{- end }}
        {{- if $kafka.caSecret }}
        - secret:
            name: {{ $kafka.caSecret }}
            items: [{key: {{ $kafka.caKey | quote }}, path: ca.crt}]
        {{- end }}
        {{- if $kafka.clientCertSecret }}
        - secret:
            name: {{ $kafka.clientCertSecret }}
            items: [{key: tls.crt, path: client.crt}, {key: tls.key, path: client.key}]
        {{- end }}
  {{- end }}
{{- end -}}
