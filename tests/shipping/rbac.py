"""The RBAC tables: the API calls the operator and kopf make, and what a rendered Role
grants. Shared by test_rbac.py (the tables against the code and the chart) and
test_rbac_runtime.py (the tables against the calls a running operator makes)."""

from __future__ import annotations

from typing import NamedTuple

from raftkv_operator import naming as n

from .chart import Obj


class Call(NamedTuple):
    group: str
    resource: str  # "<plural>" or "<plural>/<subresource>"
    verb: str


#: What the operator's code calls (through kube.py), and why.
OPERATOR_CALLS: dict[Call, str] = {
    Call(n.GROUP, n.PLURAL, "get"): "read_raftkv: each pass starts from a fresh read",
    Call(n.GROUP, f"{n.PLURAL}/status", "patch"): "patch_raftkv_status: bookkeeping",
    Call(n.GROUP, n.PLURAL, "patch"): (
        "remove_raftkv_annotation: raftkv.dev/force-new-cluster, once recorded in status"
    ),
    Call("", "services", "get"): "read: observe the peer and client Services",
    Call("", "services", "create"): "create: CreateChildren",
    Call("", "secrets", "get"): "read: observe the peer secret",
    Call("", "secrets", "create"): "create: the peer secret",
    Call("", "configmaps", "get"): "read: the bootstrap ConfigMap",
    Call("", "configmaps", "create"): "create: the bootstrap ConfigMap",
    Call("", "configmaps", "patch"): "patch_configmap: bootstrap state new -> existing",
    Call("apps", "statefulsets", "get"): "read: the members' StatefulSet",
    Call("apps", "statefulsets", "create"): "create: the members' StatefulSet",
    Call("apps", "statefulsets", "patch"): (
        "scale_statefulset: one member at a time; update_statefulset_template: rolling"
    ),
    Call("policy", "poddisruptionbudgets", "get"): "read: the PDB",
    Call("policy", "poddisruptionbudgets", "create"): "create: the PDB",
    Call("", "pods", "list"): "list_pods: observation by label selector",
    Call("", "pods", "delete"): "delete_pod: a rolling change restarts one member",
    Call("", "persistentvolumeclaims", "list"): "list_pvcs: claims of a deleted RaftKV",
    Call("", "persistentvolumeclaims", "delete"): "delete_pvc: claims of removed members",
    Call("batch", "cronjobs", "get"): "read: the backup CronJob of spec.backup",
    Call("batch", "cronjobs", "create"): "create: the backup CronJob",
    Call("batch", "cronjobs", "patch"): "replace_cronjob: spec.backup changed",
    Call("batch", "cronjobs", "delete"): "delete_cronjob: spec.backup removed",
    Call("batch", "jobs", "list"): "list_backup_jobs: status.backup from the Jobs",
    Call("", "secrets", "update"): "replace_secret: spec.tls renews a certificate in place",
    Call("cert-manager.io", "certificates", "get"): "read_certificate: spec.tls certManager",
    Call("cert-manager.io", "certificates", "create"): "create_certificate: server and peer",
    Call("cert-manager.io", "certificates", "patch"): "replace_certificate: SANs, duration",
}

#: The operator's own cluster-wide calls: with a namespace-scoped Role it goes without.
OPERATOR_CLUSTER_CALLS: dict[Call, str] = {
    Call("apiextensions.k8s.io", "customresourcedefinitions", "get"): (
        "read_crd: refuse to run against an older RaftKV CRD"
    ),
}

#: What kopf does on the operator's behalf (kopf 1.45: _core/reactor/observation.py,
#: _cogs/clients/{watching,patching,events}.py, _kits/hierarchies.py).
KOPF_CALLS: dict[Call, str] = {
    Call(n.GROUP, n.PLURAL, "list"): "the watch starts with a list",
    Call(n.GROUP, n.PLURAL, "watch"): "handlers on RaftKVs",
    Call(n.GROUP, n.PLURAL, "patch"): "progress annotations, last-handled state, finalizer",
    Call(n.GROUP, f"{n.PLURAL}/status", "patch"): "kopf sends the status part of a patch here",
    Call("", "events", "create"): "kopf.event() and handler progress events",
    Call(n.GROUP, f"{n.PLURAL}/finalizers", "update"): (
        "kopf.adopt() sets blockOwnerDeletion; OwnerReferencesPermissionEnforcement "
        "requires update on the owner's finalizers"
    ),
}

#: Cluster-wide only (a Role cannot grant it; kopf falls back without it).
KOPF_CLUSTER_CALLS: dict[Call, str] = {
    Call("apiextensions.k8s.io", "customresourcedefinitions", "list"): "resource observation",
    Call("apiextensions.k8s.io", "customresourcedefinitions", "watch"): "resource observation",
}


def granted(role: Obj) -> set[Call]:
    calls = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no URLs, no names
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    calls.add(Call(group, resource, verb))
    return calls
