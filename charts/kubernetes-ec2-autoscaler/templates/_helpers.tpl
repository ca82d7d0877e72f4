{{/* The name of every object; the Lease's name is fixed by the code (kubernetes-ec2-autoscaler). */}}
{{- define "autoscaler.fullname" -}}
{{- .Values.fullnameOverride | default "kubernetes-ec2-autoscaler" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "autoscaler.namespace" -}}
{{- .Values.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "autoscaler.selectorLabels" -}}
app.kubernetes.io/name: kubernetes-ec2-autoscaler
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "autoscaler.labels" -}}
{{ include "autoscaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "autoscaler.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "autoscaler.validate" -}}
{{- if not .Values.clusterName -}}
{{- fail "clusterName is required: the value of the KubernetesCluster tag of the groups to manage" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) -}}
{{- fail "replicaCount above 1 needs leaderElection.enabled: two replicas would both act" -}}
{{- end -}}
{{- if and .Values.aws.roleArn .Values.aws.existingSecret -}}
{{- fail "aws.roleArn and aws.existingSecret: choose one source of AWS credentials" -}}
{{- end -}}
{{- end -}}
