"""The rules the suite applies to Kubernetes objects, on objects built by hand."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from raftkv_e2e import state
from raftkv_e2e.state import ObjectRef

from raftkv_operator import naming
from raftkv_operator.objects import RaftKVObject, peer_service, statefulset

JSON = dict[str, Any]


def raftkv(replicas: int = 3, **status: Any) -> JSON:
    base: JSON = {
        "metadata": {"name": "kv", "generation": 2, "uid": "u-1"},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "readyReplicas": replicas,
            "leader": "kv-1",
            "memberIDs": [{"ordinal": k, "id": k + 1} for k in range(replicas)],
            "members": [
                {"id": k + 1, "name": f"kv-{k}", "learner": False} for k in range(replicas)
            ],
            "inFlight": None,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "QuorumHealthy"},
                {"type": "Progressing", "status": "False", "reason": "InSync"},
                {"type": "Degraded", "status": "False", "reason": "AllMembersReady"},
                {"type": "Ready", "status": "True", "reason": "AllMembersReady"},
            ],
        },
    }
    base["status"].update(status)
    return base


def test_raftkv_in_sync() -> None:
    assert state.raftkv_not_in_sync(raftkv(3), 3) is None
    assert state.member_ids(raftkv(3)) == {0: 1, 1: 2, 2: 3}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"observedGeneration": 1}, "observedGeneration"),
        ({"readyReplicas": 2}, "readyReplicas=2"),
        ({"inFlight": {"kind": "Add", "ordinal": 3, "memberID": 4}}, "in flight"),
        ({"leader": None}, "leader"),
        ({"memberIDs": [{"ordinal": 0, "id": 1}]}, "ordinals [0]"),
        (
            {
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "True", "reason": "LearnerCatchingUp"},
                ]
            },
            "LearnerCatchingUp",
        ),
        (
            {"conditions": [{"type": "Available", "status": "False", "reason": "QuorumLost"}]},
            "QuorumLost",
        ),
        (
            {
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "False", "reason": "InSync"},
                    {"type": "Ready", "status": "False", "reason": "Scaling"},
                ]
            },
            "Ready=False (Scaling",
        ),
    ],
)
def test_raftkv_not_in_sync(change: JSON, why: str) -> None:
    reason = state.raftkv_not_in_sync(raftkv(3, **change), 3)
    assert reason is not None
    assert why in reason
    assert state.raftkv_not_in_sync(raftkv(3), 5) is not None


def test_learners_are_not_in_sync() -> None:
    obj = raftkv(3)
    obj["status"]["members"][2]["learner"] = True
    assert "members" in (state.raftkv_not_in_sync(obj, 3) or "")


def pod(name: str, ready: bool = True, **container: Any) -> JSON:
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "raftkv", "image": "raftkv:e2e", **container}],
        },
    }


def test_pods_in_sync() -> None:
    pods = [pod("kv-0"), pod("kv-1"), pod("kv-2")]
    assert state.pods_not_in_sync(pods, "kv", 3) is None
    assert "want" in (state.pods_not_in_sync(pods[:2], "kv", 3) or "")
    assert "not ready" in (state.pods_not_in_sync([*pods[:2], pod("kv-2", False)], "kv", 3) or "")
    terminating = copy.deepcopy(pods)
    terminating[1]["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert "kv-1" in (state.pods_not_in_sync(terminating, "kv", 3) or "")


def test_hopeless_pod_states() -> None:
    pull = pod("kv-0", False, state={"waiting": {"reason": "ImagePullBackOff", "message": "nope"}})
    transient = pod("kv-1", False, state={"waiting": {"reason": "ErrImagePull"}})
    crashing = pod("kv-2", False, restartCount=5, state={"waiting": {"reason": "CrashLoopBackOff"}})
    restarting = pod(
        "kv-3", False, restartCount=1, state={"waiting": {"reason": "CrashLoopBackOff"}}
    )
    problems = state.pod_problems([pull, transient, crashing, restarting, pod("kv-4")])
    assert len(problems) == 2
    assert "kv-0" in problems[0]
    assert "ImagePullBackOff" in problems[0]
    assert "raftkv:e2e" in problems[0]
    assert "kv-2" in problems[1]


def test_runs_image_reads_the_pod_spec() -> None:
    spec_pod = {"spec": {"containers": [{"name": "operator", "image": "raftkv:e2e"}]}}
    assert state.runs_image(spec_pod, "raftkv:e2e")
    assert not state.runs_image(spec_pod, "ghcr.io/raftkv/raftkv:0.1.0")
    assert not state.runs_image({}, "raftkv:e2e")


def test_statefulset_and_deployment_progress() -> None:
    sts = {"spec": {"replicas": 3}, "status": {"replicas": 3, "readyReplicas": 3}}
    assert state.statefulset_not_in_sync(sts, 3) is None
    assert state.statefulset_not_in_sync(sts, 5) is not None
    assert state.statefulset_not_in_sync(None, 3) == "no StatefulSet"
    dep = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 2,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
        },
    }
    assert state.deployment_not_ready(dep) is None
    rolling = copy.deepcopy(dep)
    rolling["status"]["replicas"] = 2  # the old pod is still there
    assert "rollout" in (state.deployment_not_ready(rolling) or "")
    stale = copy.deepcopy(dep)
    stale["status"]["observedGeneration"] = 1
    assert state.deployment_not_ready(stale) is not None


def test_event_reasons_of_one_object() -> None:
    events = [
        {"involvedObject": {"uid": "u-1"}, "reason": "LearnerPromoted", "lastTimestamp": "2"},
        {"involvedObject": {"uid": "u-2"}, "reason": "Other", "lastTimestamp": "1"},
        {"involvedObject": {"uid": "u-1"}, "reason": "LearnerAdded", "lastTimestamp": "1"},
    ]
    assert state.event_reasons(events, "u-1") == ["LearnerAdded", "LearnerPromoted"]


# --------------------------------------------------------------------------- orphans


def owned(kind: str, name: str, **meta: Any) -> JSON:
    return {"kind": kind, "metadata": {"name": name, **meta}}


def test_orphans_and_retained_claims() -> None:
    rkv = RaftKVObject(name="kv", namespace="ns", uid="u-1", spec={"replicas": 3})
    sts = statefulset(rkv, 3)
    sts["kind"] = "StatefulSet"
    items = [
        sts,  # labelled by the operator
        peer_service(rkv),
        owned("ControllerRevision", "kv-7d4b9", ownerReferences=[{"uid": "sts-uid"}]),
        owned("Pod", "kv-2"),
        owned("Pod", "kv-abc"),
        owned("EndpointSlice", "kv-client-x2", labels={"kubernetes.io/service-name": "kv-client"}),
        owned("EndpointSlice", "web-x2", labels={"kubernetes.io/service-name": "web"}),
        owned("ConfigMap", "kube-root-ca.crt"),
        owned("Secret", "kv-peer-secret"),
        owned(
            "PersistentVolumeClaim",
            naming.pvc_name("kv", 0),
            labels=naming.selector_labels("kv"),
        ),
        owned("PersistentVolumeClaim", "someone-elses"),
    ]
    orphans, retained = state.find_orphans(items, "kv", ["u-1", "sts-uid"])
    assert orphans == [
        "ControllerRevision/kv-7d4b9",
        "EndpointSlice/kv-client-x2",
        "Pod/kv-2",
        "Secret/kv-peer-secret",
        "Service/kv-peer",
        "StatefulSet/kv",
    ]
    assert retained == ["PersistentVolumeClaim/data-kv-0"]
    assert state.find_orphans([items[6], items[7], items[10]], "kv", ["u-1"]) == ([], [])


# --------------------------------------------------------------------------- install

RENDERED = """
apiVersion: v1
kind: Namespace
metadata:
  name: raftkv-system
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: raftkvs.raftkv.dev
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: raftkv-operator
  namespace: raftkv-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: raftkv-operator
---
# a comment-only document
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: raftkv-operator
---
apiVersion: v1
kind: List
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {name: rb, namespace: other}
"""


def test_inventory_of_rendered_manifests() -> None:
    refs = state.inventory(RENDERED, "raftkv-system")
    assert [str(r) for r in refs] == [
        "Namespace/raftkv-system",
        "CustomResourceDefinition/raftkvs.raftkv.dev",
        "ServiceAccount/raftkv-operator in raftkv-system",
        "ClusterRole/raftkv-operator",
        "Deployment/raftkv-operator in raftkv-system",
        "RoleBinding/rb in other",
    ]
    assert [r.resource for r in refs] == [
        "namespace",
        "customresourcedefinition.apiextensions.k8s.io",
        "serviceaccount",
        "clusterrole.rbac.authorization.k8s.io",
        "deployment.apps",
        "rolebinding.rbac.authorization.k8s.io",
    ]
    assert ObjectRef("Service", "v1", "x", "ns").resource == "service"


def deployment(env: list[JSON] | None = None, args: list[str] | None = None) -> JSON:
    container: JSON = {"name": "operator", "image": "ghcr.io/x/raftkv:0.1.0"}
    if env is not None:
        container["env"] = env
    if args is not None:
        container["args"] = args
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


def test_operator_image_patch_targets_the_operator_container() -> None:
    dep = deployment([{"name": "RAFTKV_MEMBER_IMAGE", "value": "ghcr.io/x/raftkv:0.1.0"}])
    patch = state.operator_image_patch(dep, "raftkv:e2e", "IfNotPresent", "operator")
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container == {
        "name": "operator",
        "image": "raftkv:e2e",
        "imagePullPolicy": "IfNotPresent",
        "env": [{"name": "RAFTKV_MEMBER_IMAGE", "value": "raftkv:e2e", "valueFrom": None}],
    }
    # A differently named single container is still the operator; two are ambiguous.
    single = deployment()
    single["spec"]["template"]["spec"]["containers"][0]["name"] = "manager"
    assert (
        state.operator_image_patch(single, "i", "Never", "operator")["spec"]["template"]["spec"][
            "containers"
        ][0]["name"]
        == "manager"
    )
    two = copy.deepcopy(single)
    two["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"})
    with pytest.raises(ValueError, match="none named"):
        state.operator_image_patch(two, "i", "Never", "operator")


def test_operator_watch_scope() -> None:
    assert state.operator_watch_problem(deployment(), "raftkv-e2e-1", "operator") is None
    only = deployment([{"name": "RAFTKV_OPERATOR_NAMESPACES", "value": "raftkv-system"}])
    problem = state.operator_watch_problem(only, "raftkv-e2e-1", "operator")
    assert problem is not None
    assert "RAFTKV_E2E_NAMESPACE" in problem
    assert state.operator_watch_problem(only, "raftkv-system", "operator") is None
    flag = deployment(args=["operator", "--namespace", "a"])
    assert state.operator_watch_problem(flag, "b", "operator") is not None
    assert (
        state.operator_watch_problem(deployment(args=["operator", "-A"]), "b", "operator") is None
    )


def test_default_storage_class() -> None:
    classes: list[JSON] = [
        {"metadata": {"name": "slow"}},
        {
            "metadata": {
                "name": "standard",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            }
        },
    ]
    assert state.default_storage_class(classes) == "standard"
    assert state.default_storage_class(classes[:1]) is None


def _pod(name: str, revision: str | None) -> JSON:
    labels = {} if revision is None else {"raftkv.dev/member-revision": revision}
    return {"metadata": {"name": name, "labels": labels}}


def test_a_roll_is_done_when_complete_and_every_pod_is_at_the_target() -> None:
    from raftkv_e2e.config import MEMBER_REVISION_LABEL

    from raftkv_operator.objects import REVISION_LABEL

    assert MEMBER_REVISION_LABEL == REVISION_LABEL
    done = raftkv(rollout={"phase": "Complete", "targetRevision": "r2"})
    pods = [_pod("kv-0", "r2"), _pod("kv-1", "r2")]
    assert state.rollout_not_done(done, pods, REVISION_LABEL) is None
    stale = state.rollout_not_done(done, [*pods, _pod("kv-2", "r1")], REVISION_LABEL)
    assert stale is not None
    assert "kv-2" in stale
    assert state.rollout_not_done(done, [_pod("kv-0", None)], REVISION_LABEL) is not None
    rolling = raftkv(rollout={"phase": "Rolling", "targetRevision": "r2"})
    assert "Rolling" in (state.rollout_not_done(rolling, pods, REVISION_LABEL) or "")
    assert state.rollout_not_done(raftkv(), pods, REVISION_LABEL) is not None


def test_a_stopped_roll_fails_the_wait_at_once() -> None:
    stopped = raftkv(rollout={"phase": "Stopped", "reason": "kv-1 did not come back"})
    with pytest.raises(AssertionError, match="stopped"):
        state.rollout_not_done(stopped, [], "raftkv.dev/member-revision")
