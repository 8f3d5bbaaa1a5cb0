{{/*
The chart's name, cut to the 63 characters a Kubernetes name allows.
*/}}
{{- define "courier.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name, plus the chart name unless the
release name already holds it.
*/}}
{{- define "courier.fullname" -}}
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

{{- define "courier.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "courier.labels" -}}
helm.sh/chart: {{ include "courier.chart" . }}
{{ include "courier.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "courier.selectorLabels" -}}
app.kubernetes.io/name: {{ include "courier.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "courier.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "courier.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "courier.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "courier.pvcName" -}}
{{- default (printf "%s-data" (include "courier.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
Stops the render with a clear message on values that cannot work.
*/}}
{{- define "courier.validate" -}}
{{- $type := .Values.database.type }}
{{- if not (has $type (list "sqlite" "postgres")) }}
{{- fail (printf "database.type must be sqlite or postgres, not %q" $type) }}
{{- end }}
{{- if and (eq $type "sqlite") (ne (int .Values.replicaCount) 1) }}
{{- fail "database.type sqlite runs exactly one replica (one writer owns the file): set replicaCount to 1, or use PostgreSQL (values-postgres.yaml)" }}
{{- end }}
{{- if and (eq $type "postgres") (not .Values.database.postgres.existingSecret) }}
{{- fail "database.type postgres needs database.postgres.existingSecret: the name of a Secret holding the PostgreSQL URL under database.postgres.secretKey" }}
{{- end }}
{{- if and (eq $type "sqlite") (not (hasPrefix "/" .Values.database.sqlite.path)) }}
{{- fail "database.sqlite.path must be an absolute path inside the pod, e.g. /data/courier.db" }}
{{- end }}
{{- range $key := list "listen" "metrics_listen" "database_url" "tls" "auth" }}
{{- if hasKey $.Values.config $key }}
{{- fail (printf "config.%s is set by the chart (ports, metrics, database, tls, auth); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- $jwks := .Values.auth.jwks }}
{{- if and (not .Values.auth.tokensSecret) (not $jwks.secret) (not .Values.auth.allowUnauthenticated) }}
{{- fail "the chart listens on 0.0.0.0, and Courier refuses to serve a non-loopback address without authentication: set auth.tokensSecret (a Secret holding the tokens file, auth.tokens_file) or auth.jwks.secret, or set auth.allowUnauthenticated=true to let anyone who reaches the Service do anything" }}
{{- end }}
{{- if and $jwks.secret (or (not $jwks.issuer) (not $jwks.audience)) }}
{{- fail "auth.jwks.secret needs auth.jwks.issuer and auth.jwks.audience" }}
{{- end }}
{{- if and .Values.tls.clientCaSecret (not .Values.tls.secretName) }}
{{- fail "tls.clientCaSecret (mutual TLS) needs tls.secretName" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- end }}

{{/*
courier.toml from a map. Helm reads every number in values as a float, and Courier's integer
keys refuse `15.0`, so whole numbers are written as integers (toToml would write 15.0 and
1.048576e+06). Scalars come before sub-tables, as TOML requires.
Call with (dict "prefix" "" "table" $map).
*/}}
{{- define "courier.tomlTable" -}}
{{- $prefix := .prefix }}
{{- $table := .table }}
{{- range $key := keys $table | sortAlpha }}
{{- $value := index $table $key }}
{{- if not (kindIs "map" $value) }}
{{ $key }} = {{ include "courier.tomlValue" (dict "key" $key "value" $value) }}
{{- end }}
{{- end }}
{{- range $key := keys $table | sortAlpha }}
{{- $value := index $table $key }}
{{- if kindIs "map" $value }}
{{- $name := $key }}
{{- if $prefix }}{{ $name = printf "%s.%s" $prefix $key }}{{ end }}

[{{ $name }}]
{{- include "courier.tomlTable" (dict "prefix" $name "table" $value) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "courier.tomlValue" -}}
{{- $value := .value }}
{{- if kindIs "string" $value }}{{ toJson $value }}
{{- else if kindIs "bool" $value }}{{ $value }}
{{- else if or (kindIs "float64" $value) (kindIs "int" $value) (kindIs "int64" $value) }}
{{- if eq (float64 $value) (float64 (int64 $value)) }}{{ int64 $value }}{{ else }}{{ $value }}{{ end }}
{{- else if kindIs "invalid" $value }}{{ fail (printf "config.%s is null: remove it to take Courier's default" .key) }}
{{- else }}{{ fail (printf "config.%s: a %s cannot be written to courier.toml" .key (kindOf $value)) }}
{{- end }}
{{- end }}
