{{/*
Names and labels. The operator's pods must never carry the labels that select a
RaftKV's members (app.kubernetes.io/name=raftkv plus app.kubernetes.io/instance=<RaftKV
name>, see operator/raftkv_operator/naming.py): with the release and a RaftKV both
called "raftkv" the operator pod would otherwise count as a member. So the operator's
objects are named "raftkv-operator" in app.kubernetes.io/name.
*/}}

{{- define "raftkv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object-name prefix; "-operator" is appended to it, so it stays within 54 characters. */}}
{{- define "raftkv.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "raftkv.operatorName" -}}
{{- printf "%s-operator" (include "raftkv.fullname" .) -}}
{{- end -}}

{{- define "raftkv.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of everything the chart installs itself. */}}
{{- define "raftkv.labels" -}}
helm.sh/chart: {{ include "raftkv.chart" . }}
app.kubernetes.io/part-of: raftkv
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "raftkv.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "raftkv.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "raftkv.operatorLabels" -}}
{{ include "raftkv.operatorSelectorLabels" . }}
app.kubernetes.io/component: operator
{{ include "raftkv.labels" . }}
{{- end -}}

{{- define "raftkv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "raftkv.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "raftkv.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "raftkv.memberImage" -}}
{{- default (include "raftkv.image" .) .Values.operator.memberImage -}}
{{- end -}}

{{- define "raftkv.instanceName" -}}
{{- default (include "raftkv.fullname" .) .Values.instance.name -}}
{{- end -}}

{{/*
Labels the operator puts on a RaftKV's pods and Services (naming.py: common_labels).
The ServiceMonitor, the NetworkPolicy and the alerts select members by them.
*/}}
{{- define "raftkv.memberSelectorLabels" -}}
app.kubernetes.io/name: raftkv
app.kubernetes.io/component: member
{{- end -}}

{{/*
The RBAC rules: exactly the API calls the operator and kopf make, nothing broader.
tests/shipping/test_rbac.py derives the operator's calls from
operator/raftkv_operator/kube.py and compares them with these rules.
*/}}
{{- define "raftkv.rbacRules" -}}
# kopf watches RaftKVs and keeps its progress annotations and its finalizer on them
# (patch); the operator reads a RaftKV afresh at the start of every pass (get).
- apiGroups: ["raftkv.dev"]
  resources: ["raftkvs"]
  verbs: ["get", "list", "watch", "patch"]
# The operator's status bookkeeping (members, ids, conditions).
- apiGroups: ["raftkv.dev"]
  resources: ["raftkvs/status"]
  verbs: ["patch"]
# Children are created with an ownerReference that has blockOwnerDeletion (kopf.adopt);
# clusters running the OwnerReferencesPermissionEnforcement admission plugin require
# update on the owner's finalizers for that.
- apiGroups: ["raftkv.dev"]
  resources: ["raftkvs/finalizers"]
  verbs: ["update"]
# Events about membership changes and handler progress, posted on the RaftKV.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# The peer and client Services and the peer secret: created once, then only read.
- apiGroups: [""]
  resources: ["services", "secrets"]
  verbs: ["get", "create"]
# The bootstrap ConfigMap: "new" until the first member bootstrapped, then "existing".
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
# Observation of the members (by label selector); a rolling change deletes one member
# pod at a time (the StatefulSet is OnDelete) and the controller recreates it.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "delete"]
# Claims of members that left Raft are deleted (and all of them with the RaftKV).
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "delete"]
# The members' StatefulSet: created, then scaled one member at a time; its pod
# template is rewritten when the spec renders a new member revision.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create"]
# Scheduled backups (spec.backup): the CronJob is kept as the spec renders it, and
# deleted when backups are turned off; its Jobs are listed for status.backup (the
# results are their pods' termination messages, read with the pods list above).
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list"]
# spec.tls: a renewed certificate rewrites its Secret in place (the members reload it
# from the mounted volume; no pod restarts).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["update"]
# spec.tls with mode certManager: the server and peer Certificates (cert-manager.io/v1).
- apiGroups: ["cert-manager.io"]
  resources: ["certificates"]
  verbs: ["get", "create", "patch"]
{{- end -}}
