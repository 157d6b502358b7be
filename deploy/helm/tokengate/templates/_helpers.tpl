{{/* The name of every object: the release name, short enough for label values and annotation keys. */}}
{{- define "tokengate.fullname" -}}
{{- default .Release.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokengate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokengate.fullname" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokengate.labels" -}}
{{ include "tokengate.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "tokengate.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/* tokengate's config.yaml: what the chart decides, then .Values.config over it. */}}
{{- define "tokengate.config" -}}
{{- $c := dict -}}
{{- $_ := set $c "listen" "0.0.0.0:8081" -}}
{{- $_ = set $c "admin_listen" "0.0.0.0:9091" -}}
{{- $_ = set $c "log_format" "json" -}}
{{- $_ = set $c "trusted_proxies" .Values.trustedProxies -}}
{{- $_ = set $c "server" (dict "shutdown_delay" (printf "%ds" (int .Values.shutdown.delaySeconds)) "shutdown_grace" (printf "%ds" (int .Values.shutdown.graceSeconds))) -}}
{{- $tokens := dict "signing_key_file" "/etc/tokengate/secret/signing.key" -}}
{{- if .Values.secrets.verificationKeys -}}
{{- $files := list -}}
{{- range $i, $k := .Values.secrets.verificationKeys -}}
{{- $files = append $files (printf "/etc/tokengate/secret/verification-%d.pem" (add1 $i)) -}}
{{- end -}}
{{- $_ = set $tokens "verification_key_files" $files -}}
{{- end -}}
{{- $_ = set $c "tokens" $tokens -}}
{{- $users := dict "backend" "file" "file" "/etc/tokengate/secret/users.yaml" "refresh_interval" .Values.users.refreshInterval -}}
{{- $ldap := dict -}}
{{- if .Values.secrets.ldapPassword -}}
{{- $_ = set $ldap "bind_password_file" "/etc/tokengate/secret/ldap-password" -}}
{{- end -}}
{{- if .Values.secrets.ldapCA -}}
{{- $_ = set $ldap "ca_file" "/etc/tokengate/secret/ldap-ca.pem" -}}
{{- end -}}
{{- if $ldap -}}
{{- $_ = set $users "ldap" $ldap -}}
{{- end -}}
{{- $_ = set $c "users" $users -}}
{{- $_ = set $c "access" (dict "default" .Values.access.default "case_insensitive_paths" .Values.access.caseInsensitivePaths "groups_header" .Values.access.groupsHeader "rules" .Values.access.rules) -}}
{{- if .Values.secrets.adminToken -}}
{{- $_ = set $c "admin_token_file" "/etc/tokengate/secret/admin.token" -}}
{{- end -}}
{{- if eq .Values.revocation.backend "redis" -}}
{{- $r := dict "backend" "redis" "redis_url" .Values.revocation.redis.url -}}
{{- if .Values.revocation.redis.password -}}
{{- $_ = set $r "redis_password_file" "/etc/tokengate/secret/redis.password" -}}
{{- end -}}
{{- $_ = set $c "revocation" $r -}}
{{- else -}}
{{- $_ = set $c "revocation" (dict "backend" "bolt" "path" "/var/lib/tokengate/revocations.db") -}}
{{- end -}}
{{- if .Values.tracing.enabled -}}
{{- $_ = set $c "tracing" (dict "enabled" true "sampler_ratio" .Values.tracing.samplerRatio) -}}
{{- end -}}
{{- if eq .Values.mode "sidecar" -}}
{{- $_ = set $c "upstream" (printf "http://127.0.0.1:%d" (int .Values.app.port)) -}}
{{- $_ = set $c "public_paths" list -}}
{{- else -}}
{{- $_ = set $c "upstream" "" -}}
{{- $_ = set $c "public_paths" (list "/healthz") -}}
{{- $_ = set $c "routes" (dict "login" "/tokengate/login" "logout" "/tokengate/logout" "logout_all" "/tokengate/logout_all" "session" "/tokengate/session" "users" "/tokengate/users" "jwks" "/tokengate/jwks.json" "sign_in" "/tokengate/sign_in" "sign_out" "/tokengate/sign_out" "verify" "/tokengate/verify") -}}
{{- $_ = set $c "browser" (dict "cookie_name" "tokengate" "cookie_secure" true "allowed_redirect_hosts" .Values.ingress.hosts) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $c (deepCopy .Values.config)) -}}
{{- end -}}

{{/* The Secret's keys; its JSON's sha256 rolls the pods. */}}
{{- define "tokengate.secretData" -}}
signing.key: {{ .Values.secrets.signingKey | quote }}
users.yaml: {{ .Values.secrets.users | quote }}
{{- if .Values.secrets.adminToken }}
admin.token: {{ .Values.secrets.adminToken | quote }}
{{- end }}
{{- range $i, $k := .Values.secrets.verificationKeys }}
verification-{{ add1 $i }}.pem: {{ $k | quote }}
{{- end }}
{{- if .Values.revocation.redis.password }}
redis.password: {{ .Values.revocation.redis.password | quote }}
{{- end }}
{{- if .Values.secrets.ldapPassword }}
ldap-password: {{ .Values.secrets.ldapPassword | quote }}
{{- end }}
{{- if .Values.secrets.ldapCA }}
ldap-ca.pem: {{ .Values.secrets.ldapCA | quote }}
{{- end }}
{{- end -}}
