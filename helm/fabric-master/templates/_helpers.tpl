{{/* Names, labels and the settings both StatefulSets share. */}}

{{- define "fabric-master.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fabric-master.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "fabric-master.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "fabric-master.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "fabric-master.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fabric-master.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The backup Job's pods: their own name, so no Service or PDB of the replicas selects them. */}}
{{- define "fabric-master.backupLabels" -}}
app.kubernetes.io/name: {{ include "fabric-master.name" . }}-backup
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: backup
{{- end }}

{{- define "fabric-master.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fabric-master.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The headless Service that gives every pod its peer DNS name. */}}
{{- define "fabric-master.peers" -}}
{{ include "fabric-master.fullname" . }}-peers
{{- end }}

{{/* DNS suffix of the pods' peer names. */}}
{{- define "fabric-master.peerDomain" -}}
{{ include "fabric-master.peers" . }}.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end }}

{{/* Peer address of voter pod ORDINAL ("{}" for the template the binary expands). */}}
{{- define "fabric-master.voterPeer" -}}
{{ include "fabric-master.fullname" .root }}-{{ .ordinal }}.{{ include "fabric-master.peerDomain" .root }}:{{ .root.Values.peer.port }}
{{- end }}

{{- define "fabric-master.peerTlsSecret" -}}
{{- if .Values.peer.tls.existingSecret }}{{ .Values.peer.tls.existingSecret }}{{ else }}{{ include "fabric-master.fullname" . }}-peer-tls{{ end }}
{{- end }}

{{- define "fabric-master.superuserSecret" -}}
{{- if .Values.superuser.existingSecret }}{{ .Values.superuser.existingSecret }}{{ else }}{{ include "fabric-master.fullname" . }}-superuser{{ end }}
{{- end }}

{{- define "fabric-master.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Seconds Kubernetes waits after SIGTERM: the whole drain plus the hand-over. */}}
{{- define "fabric-master.grace" -}}
{{ add (div (add .Values.drain.delayMs .Values.drain.windowMs) 1000) .Values.drain.extraGraceSeconds }}
{{- end }}

{{- define "fabric-master.checks" -}}
{{- $v := int .Values.voters.replicas }}
{{- if or (lt $v 1) (gt $v 7) (eq (mod $v 2) 0) }}
{{- fail (printf "voters.replicas must be odd, 1 to 7 (3 or 5 advised), not %d" $v) }}
{{- end }}
{{- if and (not .Values.superuser.publicKey) (not .Values.superuser.existingSecret) }}
{{- fail "superuser.publicKey (the content of a Crossbar.io .pub key file) or superuser.existingSecret is required" }}
{{- end }}
{{- if and .Values.peer.tls.certManager.enabled (not .Values.peer.tls.certManager.issuerRef.name) }}
{{- fail "peer.tls.certManager.issuerRef.name is required with cert-manager" }}
{{- end }}
{{- end }}

{{/* Environment every replica gets. */}}
{{- define "fabric-master.env" -}}
- name: FABRIC_LISTEN
  value: "0.0.0.0:9000"
- name: FABRIC_PEER_LISTEN
  value: "0.0.0.0:{{ .Values.peer.port }}"
- name: FABRIC_DATA_DIR
  value: /data
- name: FABRIC_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: CROSSBAR_FABRIC_SUPERUSER
  value: /superuser/superuser.pub
- name: FABRIC_PEER_TLS_CA
  value: /peer-tls/ca.crt
- name: FABRIC_PEER_TLS_CERT
  value: /peer-tls/tls.crt
- name: FABRIC_PEER_TLS_KEY
  value: /peer-tls/tls.key
- name: FABRIC_VOTERS
  value: {{ .Values.voters.replicas | quote }}
- name: FABRIC_WRITE_TIMEOUT_MS
  value: {{ .Values.raft.writeTimeoutMs | quote }}
- name: FABRIC_RAFT_HEARTBEAT_MS
  value: {{ .Values.raft.heartbeatMs | quote }}
- name: FABRIC_RAFT_ELECTION_TIMEOUT_MS
  value: {{ .Values.raft.electionTimeoutMs | quote }}
- name: FABRIC_LEARNER_REAP_MS
  value: {{ .Values.raft.learnerReapMs | quote }}
- name: FABRIC_DRAIN_DELAY_MS
  value: {{ .Values.drain.delayMs | quote }}
- name: FABRIC_DRAIN_WINDOW_MS
  value: {{ .Values.drain.windowMs | quote }}
{{- if .Values.config }}
- name: FABRIC_CONFIG
  value: /config/config.toml
{{- end }}
{{- if .Values.smtp.existingSecret }}
- name: FABRIC_SMTP_URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.smtp.existingSecret }}, key: url}
{{- else if .Values.smtp.url }}
- name: FABRIC_SMTP_URL
  valueFrom:
    secretKeyRef: {name: {{ include "fabric-master.fullname" . }}-smtp, key: url}
{{- end }}
{{- if .Values.smtp.from }}
- name: FABRIC_SMTP_FROM
  value: {{ .Values.smtp.from | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Probes, ports, mounts and security every replica container shares. */}}
{{- define "fabric-master.container" -}}
image: {{ include "fabric-master.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: ["start"]
ports:
  - {name: ws, containerPort: 9000}
  - {name: peer, containerPort: {{ .Values.peer.port }}}
startupProbe:
  httpGet: {path: /healthz, port: ws}
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
readinessProbe:
  httpGet: {path: /readyz, port: ws}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
{{- if .Values.probes.liveness.enabled }}
livenessProbe:
  httpGet: {path: /healthz, port: ws}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
{{- end }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - {name: data, mountPath: /data}
  - {name: peer-tls, mountPath: /peer-tls, readOnly: true}
  - {name: superuser, mountPath: /superuser, readOnly: true}
  {{- if .Values.config }}
  - {name: config, mountPath: /config, readOnly: true}
  {{- end }}
{{- end }}

{{/* Volumes every replica pod shares (its data volume comes from its StatefulSet). */}}
{{- define "fabric-master.volumes" -}}
- name: peer-tls
  secret:
    secretName: {{ include "fabric-master.peerTlsSecret" . }}
    defaultMode: 0400
- name: superuser
  secret:
    secretName: {{ include "fabric-master.superuserSecret" . }}
    items: [{key: superuser.pub, path: superuser.pub}]
{{- if .Values.config }}
- name: config
  configMap:
    name: {{ include "fabric-master.fullname" . }}
{{- end }}
{{- end }}

{{- define "fabric-master.podAnnotations" -}}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: "9000"
prometheus.io/path: /metrics
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Anti-affinity among the pods of one pool ("hard", "soft" or ""). */}}
{{- define "fabric-master.antiAffinity" -}}
{{- $term := dict "labelSelector" (dict "matchLabels" (dict "app.kubernetes.io/instance" .root.Release.Name "app.kubernetes.io/component" .component)) "topologyKey" "kubernetes.io/hostname" }}
{{- if eq .mode "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - {{ toYaml $term | nindent 6 | trim }}
{{- else if eq .mode "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        {{- toYaml $term | nindent 8 }}
{{- end }}
{{- end }}
