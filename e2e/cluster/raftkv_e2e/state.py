"""Pure judgements on Kubernetes objects as ``kubectl get -o json`` returns them.

Kept free of I/O so each rule (when is a RaftKV in sync, which pod state is hopeless,
what counts as an orphan) is unit-tested with objects built by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

JSON = dict[str, Any]

INSTANCE_LABEL = "app.kubernetes.io/instance"

#: Waiting reasons after which a pod will not start by itself. ErrImagePull alone is
#: not here: a registry hiccup is retried, and the next state is ImagePullBackOff.
HOPELESS_WAITING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
#: CrashLoopBackOff is hopeless only after this many restarts (a member may exit while
#: its cluster is still forming, and the operator may restart it on purpose).
CRASH_LOOP_RESTARTS = 5


def conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    status = obj.get("status") or {}
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def member_ids(obj: Mapping[str, Any]) -> dict[int, int]:
    """status.memberIDs of a RaftKV as {ordinal: member id}."""
    status = obj.get("status") or {}
    return {int(m["ordinal"]): int(m["id"]) for m in status.get("memberIDs") or []}


def raftkv_not_in_sync(obj: Mapping[str, Any], replicas: int) -> str | None:
    """Why the RaftKV's own status does not (yet) report ``replicas`` members in sync;
    None when it does."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    conds = conditions(obj)
    if status.get("observedGeneration") != meta.get("generation"):
        return (
            f"status.observedGeneration={status.get('observedGeneration')} but "
            f"generation={meta.get('generation')}"
        )
    available = conds.get("Available") or {}
    if available.get("status") != "True":
        why = f"{available.get('reason')}: {available.get('message')}"
        return f"Available={available.get('status')} ({why})"
    progressing = conds.get("Progressing") or {}
    if progressing.get("reason") != "InSync":
        return f"Progressing: {progressing.get('reason')}: {progressing.get('message')}"
    ready = conds.get("Ready") or {}
    if ready.get("status") != "True":
        return f"Ready={ready.get('status')} ({ready.get('reason')}: {ready.get('message')})"
    if status.get("inFlight"):
        return f"a membership change is in flight: {status['inFlight']}"
    if status.get("replicas") != replicas or status.get("readyReplicas") != replicas:
        return (
            f"status.replicas={status.get('replicas')} readyReplicas="
            f"{status.get('readyReplicas')}, want {replicas}"
        )
    if sorted(member_ids(obj)) != list(range(replicas)):
        return f"status.memberIDs covers ordinals {sorted(member_ids(obj))}"
    members = status.get("members") or []
    if len(members) != replicas or any(m.get("learner") for m in members):
        return f"status.members={members}"
    if not status.get("leader"):
        return "status.leader is empty"
    return None


def statefulset_not_in_sync(sts: Mapping[str, Any] | None, replicas: int) -> str | None:
    if sts is None:
        return "no StatefulSet"
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    if spec.get("replicas") != replicas:
        return f"StatefulSet spec.replicas={spec.get('replicas')}"
    if status.get("readyReplicas", 0) != replicas or status.get("replicas", 0) != replicas:
        return (
            f"StatefulSet status.replicas={status.get('replicas')} "
            f"readyReplicas={status.get('readyReplicas')}"
        )
    return None


def pod_ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pods_not_in_sync(pods: Sequence[Mapping[str, Any]], name: str, replicas: int) -> str | None:
    """Exactly pods ``<name>-0`` .. ``<name>-<replicas-1>``, all ready, none terminating."""
    names = sorted(p["metadata"]["name"] for p in pods)
    want = sorted(f"{name}-{k}" for k in range(replicas))
    if names != want:
        return f"pods are {names}, want {want}"
    unready = [p["metadata"]["name"] for p in pods if not pod_ready(p)]
    if unready:
        return f"pods not ready: {unready}"
    return None


def pod_problems(pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """Pod states that will not resolve by waiting (bad image, crash loop)."""
    problems = []
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        for cs in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        ):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in HOPELESS_WAITING or (
                reason == "CrashLoopBackOff" and cs.get("restartCount", 0) >= CRASH_LOOP_RESTARTS
            ):
                problems.append(
                    f"pod {name} container {cs.get('name')}: {reason}: "
                    f"{waiting.get('message', '')} (image {cs.get('image')})"
                )
    return problems


def runs_image(pod: Mapping[str, Any], image: str) -> bool:
    """Whether a container of ``pod`` (its spec, as written) uses ``image``."""
    containers = ((pod.get("spec") or {}).get("containers")) or []
    return any(c.get("image") == image for c in containers)


def event_reasons(events: Iterable[Mapping[str, Any]], uid: str) -> list[str]:
    """Reasons of the Events about the object with ``uid``, oldest first; core/v1
    (``involvedObject``) and events.k8s.io/v1 (``regarding``) shapes alike."""
    mine = [
        e for e in events if (e.get("involvedObject") or e.get("regarding") or {}).get("uid") == uid
    ]

    def when(e: Mapping[str, Any]) -> str:
        return str(
            e.get("lastTimestamp")
            or e.get("deprecatedLastTimestamp")
            or e.get("eventTime")
            or e.get("firstTimestamp")
            or ""
        )

    mine.sort(key=when)
    return [str(e.get("reason")) for e in mine]


# --------------------------------------------------------------------------- orphans


def is_owned(obj: Mapping[str, Any], name: str, owner_uids: Iterable[str]) -> bool:
    """Whether ``obj`` belongs to RaftKV ``name``: its instance label, an owner
    reference to the RaftKV (or to an object it owned), or a child's name."""
    meta = obj.get("metadata") or {}
    if (meta.get("labels") or {}).get(INSTANCE_LABEL) == name:
        return True
    uids = set(owner_uids)
    if any(ref.get("uid") in uids for ref in meta.get("ownerReferences") or []):
        return True
    child_names = {
        name,
        f"{name}-client",
        f"{name}-peer",
        f"{name}-peer-secret",
        f"{name}-bootstrap",
    }
    obj_name = str(meta.get("name", ""))
    if obj.get("kind") == "Pod":
        return obj_name.startswith(f"{name}-") and obj_name[len(name) + 1 :].isdigit()
    if obj.get("kind") == "EndpointSlice":
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        return bool(svc in child_names)
    return obj_name in child_names


def find_orphans(
    items: Iterable[Mapping[str, Any]], name: str, owner_uids: Iterable[str]
) -> tuple[list[str], list[str]]:
    """(orphans, retained PVCs) among ``items`` after RaftKV ``name`` was deleted."""
    uids = list(owner_uids)
    orphans: list[str] = []
    retained: list[str] = []
    for obj in items:
        if not is_owned(obj, name, uids):
            continue
        ref = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        (retained if obj.get("kind") == "PersistentVolumeClaim" else orphans).append(ref)
    return sorted(orphans), sorted(retained)


# --------------------------------------------------------------------------- install


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    api_version: str
    name: str
    namespace: str | None

    @property
    def resource(self) -> str:
        """The ``kind.group`` form kubectl accepts (``deployment.apps``, ``service``)."""
        group = self.api_version.rpartition("/")[0]
        return f"{self.kind.lower()}.{group}" if group else self.kind.lower()

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.kind}/{self.name}{where}"


#: Kinds that exist only cluster-wide; every other object in a rendered manifest that
#: names no namespace lands in the namespace it is applied to.
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PriorityClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
)


def inventory(rendered: str, default_namespace: str) -> list[ObjectRef]:
    """The objects in a multi-document YAML (``kubectl kustomize``, ``helm get
    manifest``), with the namespace each one ends up in."""
    refs = []
    for doc in yaml.safe_load_all(rendered):
        if not isinstance(doc, dict) or not doc.get("kind"):
            continue
        if doc["kind"].endswith("List"):
            for item in doc.get("items") or []:
                refs += inventory(yaml.safe_dump(item), default_namespace)
            continue
        meta = doc.get("metadata") or {}
        scoped = doc["kind"] in CLUSTER_SCOPED
        refs.append(
            ObjectRef(
                kind=doc["kind"],
                api_version=str(doc.get("apiVersion", "v1")),
                name=str(meta.get("name")),
                namespace=None if scoped else str(meta.get("namespace") or default_namespace),
            )
        )
    return refs


def operator_container(deployment: Mapping[str, Any], preferred: str) -> Mapping[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    for c in containers:
        if c.get("name") == preferred:
            return dict(c)
    if len(containers) == 1:
        return dict(containers[0])
    names = [c.get("name") for c in containers]
    raise ValueError(f"operator Deployment has containers {names}, none named {preferred!r}")


def operator_image_patch(
    deployment: Mapping[str, Any], image: str, pull_policy: str, preferred: str
) -> JSON:
    """A strategic merge patch that runs the operator from ``image`` and makes it the
    members' default image (``RAFTKV_MEMBER_IMAGE``). Containers and env entries merge
    by name; ``valueFrom: null`` drops a previous indirect value."""
    name = operator_container(deployment, preferred)["name"]
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        "env": [{"name": "RAFTKV_MEMBER_IMAGE", "value": image, "valueFrom": None}],
    }
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "name" in e}


def operator_watch_problem(
    deployment: Mapping[str, Any], namespace: str, preferred: str
) -> str | None:
    """Why an operator so configured would never see a RaftKV in ``namespace``."""
    container = operator_container(deployment, preferred)
    watched = [
        ns for ns in container_env(container).get("RAFTKV_OPERATOR_NAMESPACES", "").split(",") if ns
    ]
    args = list(container.get("args") or []) + list(container.get("command") or [])
    if "--all-namespaces" in args or "-A" in args:
        return None
    for i, arg in enumerate(args):
        if arg in ("--namespace", "-n") and i + 1 < len(args):
            watched.append(args[i + 1])
        elif arg.startswith("--namespace="):
            watched.append(arg.split("=", 1)[1])
    if watched and namespace not in watched:
        return (
            f"the operator watches only {sorted(set(watched))}, not {namespace}: install it "
            f"cluster-wide or set RAFTKV_E2E_NAMESPACE to a watched namespace"
        )
    return None


def default_storage_class(classes: Iterable[Mapping[str, Any]]) -> str | None:
    for sc in classes:
        annotations = (sc.get("metadata") or {}).get("annotations") or {}
        for key in (
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        ):
            if annotations.get(key) == "true":
                return str(sc["metadata"]["name"])
    return None


def deployment_not_ready(dep: Mapping[str, Any] | None) -> str | None:
    """Why a Deployment's rollout is not complete (None when every replica is updated
    and available and no old one is left)."""
    if dep is None:
        return "no Deployment"
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return "the Deployment controller has not seen the latest spec"
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    if updated != want or available < want or status.get("replicas", 0) != updated:
        return (
            f"rollout: {updated} updated, {available} available, "
            f"{status.get('replicas', 0)} total, want {want}"
        )
    return None


def selector_string(match_labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def rollout_not_done(
    obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], label: str
) -> str | None:
    """Why a rolling change is not finished (None once `status.rollout` says Complete
    and every pod carries the target revision); raises AssertionError when the
    operator stopped it."""
    rollout = (obj.get("status") or {}).get("rollout") or {}
    phase = rollout.get("phase")
    if phase == "Stopped":
        raise AssertionError(f"the operator stopped the roll: {rollout}")
    if phase != "Complete":
        return f"rollout {rollout or 'not reported'}"
    target = rollout.get("targetRevision")
    stale = sorted(
        p["metadata"]["name"]
        for p in pods
        if ((p["metadata"].get("labels") or {}).get(label)) != target
    )
    return f"pods {stale} not at revision {target}" if stale else None
