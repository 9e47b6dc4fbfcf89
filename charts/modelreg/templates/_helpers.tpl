{{/*
Names and labels shared by every template. Cluster-scoped objects (ClusterRoles, the admission
policy) are named after the release's full name, so two releases never collide.
*/}}

{{- define "modelreg.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelreg.fullname" -}}
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

{{- define "modelreg.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelreg.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "modelreg.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "modelreg.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelreg
{{- end }}

{{- define "modelreg.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelreg.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modelreg.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The approver ClusterRole: its name is what the admission policy's denial message points at. */}}
{{- define "modelreg.approverRole" -}}
{{- printf "%s-approver" (include "modelreg.fullname" .) }}
{{- end }}

{{/*
The operator's rules on objects inside the namespaces it manages. The same list feeds the
ClusterRole (all namespaces) or one Role per watched namespace. No wildcards; Secrets are `get`
only, so the operator reads the one Secret a Model names and can never list them.
*/}}
{{- define "modelreg.operatorNamespacedRules" -}}
- apiGroups: [modelreg.dev]
  resources: [models, modelversions]
  verbs: [get, list, watch]
- apiGroups: [modelreg.dev]
  resources: [models/status, modelversions/status]
  verbs: [get, patch, update]
# Retention (a Model's spec.retention): old Archived or Superseded versions are deleted.
- apiGroups: [modelreg.dev]
  resources: [modelversions]
  verbs: [delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, update, delete]
# spec.serving.autoscaling: one HorizontalPodAutoscaler per Model, following the serving Deployment.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, update, delete]
# The old Deployment is removed only once the Service's endpoints have moved to the new one.
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
