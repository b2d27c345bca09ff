"""The Kubernetes objects one RaftKV owns, as plain JSON-ready dicts.

Pure functions of the RaftKV (name, namespace, uid, spec): no API calls, no owner
references (the executor adopts them with ``kopf.adopt``), so tests can validate each
object against the official schemas and a reviewer can read the whole pod contract
(env, probes, volumes) in one place.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raftkv_operator import naming as n
from raftkv_operator import recovery_model as R
from raftkv_operator import restore
from raftkv_operator import tls as t
from raftkv_operator import tls_transition as TT

JSON = dict[str, Any]

DEFAULT_IMAGE = "raftkv:0.1.0"
#: Non-root uid/gid of the member process; fsGroup makes the PVC writable for it.
MEMBER_UID = 10001
#: Long enough for a leader to hand over leadership and flush its WAL on SIGTERM.
TERMINATION_GRACE_SECONDS = 30
#: Pod template label carrying the member revision (see :func:`member_revision`).
REVISION_LABEL = "raftkv.dev/member-revision"
#: etcd's gRPC API: the member listens on the client port + 10000 unless
#: ``--listen-etcd`` says otherwise (docs/etcd.md); the pod does not set it.
ETCD_PORT = n.CLIENT_PORT + 10000


@dataclass(frozen=True)
class RaftKVObject:
    """The parts of a RaftKV object the builders read (metadata + spec, defaulted)."""

    name: str
    namespace: str
    uid: str
    generation: int = 1
    spec: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RaftKVObject:
        meta = body.get("metadata") or {}
        return cls(
            name=str(meta["name"]),
            namespace=str(meta.get("namespace") or "default"),
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 1),
            spec=dict(body.get("spec") or {}),
        )

    @property
    def replicas(self) -> int:
        return int(self.spec.get("replicas", 3))

    def raft(self, key: str, default: int) -> int:
        return int((self.spec.get("raft") or {}).get(key, default))

    def upgrade(self, key: str, default: float) -> float:
        """spec.upgrade.<key> (the CRD defaults them; older objects may lack them)."""
        return float((self.spec.get("upgrade") or {}).get(key, default))


def peer_service(rkv: RaftKVObject) -> JSON:
    """Headless, and publishing not-ready pods: a member must be reachable by its peers
    (and by a joining learner) *before* it is ready, or no learner could ever catch up
    and no cluster that lost quorum could elect a leader again."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(rkv, n.peer_service(rkv.name), "peer"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": n.selector_labels(rkv.name),
            "ports": [
                {"name": "peer", "port": n.PEER_PORT, "targetPort": "peer"},
                {"name": "client", "port": n.CLIENT_PORT, "targetPort": "client"},
                {"name": "etcd", "port": ETCD_PORT, "targetPort": "etcd"},
            ],
        },
    }


def client_service(rkv: RaftKVObject) -> JSON:
    """Routes only to ready members (the default): a member that is joining, removed or
    cut off from its leader would only answer 503."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(rkv, n.client_service(rkv.name), "client"),
        "spec": {
            "type": "ClusterIP",
            "selector": n.selector_labels(rkv.name),
            "ports": [
                {"name": "client", "port": n.CLIENT_PORT, "targetPort": "client"},
                {"name": "etcd", "port": ETCD_PORT, "targetPort": "etcd"},
            ],
        },
    }


def pod_disruption_budget(rkv: RaftKVObject) -> JSON:
    """One voluntary disruption at a time, and none while any member is unready: with
    an odd member count a single missing member never costs the quorum."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(rkv, n.pdb_name(rkv.name), "member"),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": n.selector_labels(rkv.name)},
        },
    }


def peer_secret(rkv: RaftKVObject, secret: str | None = None) -> JSON:
    """Created once with a random secret and never rewritten: changing it would cut
    running members off from each other."""
    value = secret if secret is not None else secrets.token_urlsafe(32)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(rkv, n.secret_name(rkv.name), "peer-secret"),
        "type": "Opaque",
        "data": {n.SECRET_KEY: base64.b64encode(value.encode()).decode()},
    }


def bootstrap_configmap(rkv: RaftKVObject, state: str) -> JSON:
    """``new`` until ordinal 0 has bootstrapped, ``existing`` forever after: a pod that
    restarts on an empty volume then joins instead of founding a second cluster."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(rkv, n.bootstrap_configmap(rkv.name), "bootstrap"),
        "data": {n.BOOTSTRAP_KEY: state},
    }


def statefulset(rkv: RaftKVObject, replicas: int, default_image: str = DEFAULT_IMAGE) -> JSON:
    """The members. ``Parallel`` pod management because ``OrderedReady`` deadlocks Raft:
    after a quorum loss pod 0 cannot become ready until pod 1 is back, and the
    controller would not recreate pod 1 until pod 0 is ready.

    ``OnDelete`` because the controller's own rolling update knows nothing of Raft: it
    would restart the leader whenever its ordinal comes up, and move on as soon as a pod
    is Ready rather than caught up. The operator deletes one pod at a time instead
    (``planner.py``, rolling changes); the controller only recreates what was deleted,
    from the current template."""
    spec = rkv.spec
    storage = spec.get("storage") or {}
    claim_spec: JSON = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": str(storage.get("size", "1Gi"))}},
    }
    if storage.get("storageClassName"):
        claim_spec["storageClassName"] = storage["storageClassName"]
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(rkv, n.statefulset_name(rkv.name), "member"),
        "spec": {
            "replicas": replicas,
            "serviceName": n.peer_service(rkv.name),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            # Scaled-away claims are the operator's to delete (only after the member
            # left Raft); a deleted RaftKV takes its data with it.
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Delete",
                "whenScaled": "Retain",
            },
            "selector": {"matchLabels": n.selector_labels(rkv.name)},
            "template": pod_template(rkv, default_image),
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": n.DATA_VOLUME, "labels": n.selector_labels(rkv.name)},
                    "spec": claim_spec,
                }
            ],
        },
    }


def pod_template(
    rkv: RaftKVObject, default_image: str = DEFAULT_IMAGE, force_pod: str | None = None
) -> JSON:
    """The members' pod template, labelled with its own member revision.

    ``force_pod`` (quorum-loss recovery, ``recovery.py``) names the one pod whose member
    starts with ``--force-new-cluster``; see :func:`with_force_pod`. The revision label is
    computed before that difference is added, so it is the same with or without it."""
    template: JSON = {
        "metadata": {"labels": n.common_labels(rkv.name)},
        "spec": pod_spec(rkv, default_image),
    }
    secured = t.spec_of(rkv.spec)
    if secured is not None:  # only with TLS: templates without it hash as before
        template["metadata"]["labels"][t.TLS_LABEL] = secured.label
        if secured.transition_label:
            template["metadata"]["labels"][TT.TRANSITION_LABEL] = secured.transition_label
    template["metadata"]["labels"][REVISION_LABEL] = revision_of(template)
    if force_pod is not None:
        with_force_pod(template, force_pod)
    return template


#: The member start command while a recovery forces a new cluster: the flag only on the
#: pod the variable names. A StatefulSet has one template for every pod; this is how one
#: ordinal differs. Every other pod, and the named one once the template loses the
#: variable, starts exactly as ``raftkv serve``.
FORCE_COMMAND = (
    f'if [ -n "${R.FORCE_POD_ENV}" ] && [ "${R.FORCE_POD_ENV}" = "$POD_NAME" ]; then '
    "exec raftkv serve --force-new-cluster; fi; exec raftkv serve"
)


def with_force_pod(template: JSON, pod: str) -> JSON:
    """Make ``template`` start the member of ``pod`` with ``--force-new-cluster``.

    Why this is safe for the pods it does not name: their command still ends in
    ``exec raftkv serve`` with the same environment, and the revision label is
    unchanged, so the rolling machinery sees nothing to roll. For the named pod the
    flag is a one-time step: the member records it in its data dir and ignores the flag
    on any later start while that marker exists (a crash loop does not remove the
    members added back since), and the operator takes the variable off the template as
    soon as that member leads alone."""
    (container,) = template["spec"]["containers"]
    container["command"] = ["/bin/sh", "-c", FORCE_COMMAND]
    container["env"] = [*container["env"], {"name": R.FORCE_POD_ENV, "value": pod}]
    return template


def member_revision(rkv: RaftKVObject, default_image: str = DEFAULT_IMAGE) -> str:
    """The revision every member's pod should run: a hash of the rendered pod template.

    Hashing the *rendered* template rather than a list of spec fields means that
    anything that reaches the pods (image, resources, Raft tuning, placement, and
    whatever a later feature adds to the template, TLS volumes for one) changes the
    revision by construction, and nothing else does (``replicas``, ``storage``,
    ``spec.upgrade``). A new operator release that renders a different template (say a
    new env variable) rolls the members once, which is what makes it take effect.

    The revision is a label on the template, so the StatefulSet controller copies it
    onto every pod it creates and the operator reads it back from each pod. The
    controller's own ``controller-revision-hash`` / ``status.updateRevision`` would
    also work on a real cluster, but its value is only known once the controller has
    seen the new template (planning from it races the controller), it hashes what the
    apiserver defaults too (so it cannot be predicted from the RaftKV), and neither the
    API stand-in nor the local kubelet computes it. A label computed from the RaftKV
    alone is known to the pure planner before anything is written, works the same on a
    real cluster and in the tests, and a StatefulSet without it (from an operator that
    predates revisions) simply reads as "not at the desired revision".
    """
    return str(pod_template(rkv, default_image)["metadata"]["labels"][REVISION_LABEL])


def revision_of(template: JSON) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of ``template`` without its
    revision label: short enough for a label value, stable across processes."""
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop(REVISION_LABEL, None)
    body = {**template, "metadata": {**(template.get("metadata") or {}), "labels": labels}}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def pod_spec(rkv: RaftKVObject, default_image: str = DEFAULT_IMAGE) -> JSON:
    spec = rkv.spec
    secured = t.spec_of(spec)
    container: JSON = {
        "name": "raftkv",
        "image": str(spec.get("image") or default_image),
        "command": ["raftkv", "serve"],
        "ports": [
            {"name": "client", "containerPort": n.CLIENT_PORT, "protocol": "TCP"},
            {"name": "peer", "containerPort": n.PEER_PORT, "protocol": "TCP"},
            # etcd's v3 gRPC API (docs/etcd.md): the member's default --listen-etcd.
            {"name": "etcd", "containerPort": ETCD_PORT, "protocol": "TCP"},
        ],
        "env": member_env(rkv),
        "volumeMounts": [{"name": n.DATA_VOLUME, "mountPath": n.DATA_DIR}],
        # Ready = a member that knows a leader and has applied what is committed.
        "readinessProbe": _probe("/readyz", period=5, failures=3, secured=secured),
        "livenessProbe": _probe("/healthz", period=10, failures=6, secured=secured),
        # Replaying a long WAL can take a while; liveness starts only after this.
        "startupProbe": _probe("/healthz", period=2, failures=60, secured=secured),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    if spec.get("resources"):
        container["resources"] = dict(spec["resources"])
    pod: JSON = {
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": MEMBER_UID,
            "runAsGroup": MEMBER_UID,
            "fsGroup": MEMBER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": spec.get("affinity") or _spread(rkv.name),
        "containers": [container],
    }
    restoring = restore.init_container(spec, member_env(rkv), container["image"])
    if restoring is not None:
        init, volumes = restoring
        pod["initContainers"] = [init]
        if volumes:
            pod["volumes"] = volumes
    if secured is not None:
        tls_volumes, tls_mounts = t.pod_volumes(rkv.name, secured)
        pod["volumes"] = [*(pod.get("volumes") or []), *tls_volumes]
        container["volumeMounts"] += tls_mounts
    if spec.get("tolerations"):
        pod["tolerations"] = list(spec["tolerations"])
    if spec.get("nodeSelector"):
        pod["nodeSelector"] = dict(spec["nodeSelector"])
    return pod


def member_env(rkv: RaftKVObject) -> list[JSON]:
    """The pod ↔ member contract (``raftkv serve`` reads every RAFTKV_* variable).

    The advertised URLs use the pod's stable DNS name so they survive rescheduling;
    they must equal what :class:`~raftkv_operator.naming.Addressing` computes by
    default, because a joining member finds its id by its advertised peer URL.
    """
    peer_host = f"$(POD_NAME).{n.peer_service(rkv.name)}.{rkv.namespace}.svc"
    secured = t.spec_of(rkv.spec)
    client_scheme = t.scheme(secured is not None and secured.client_scheme_on)
    peer_scheme = t.scheme(secured is not None and secured.peer_scheme_on)
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "RAFTKV_NAME", "value": "$(POD_NAME)"},
        {"name": "RAFTKV_DATA_DIR", "value": n.DATA_DIR},
        {"name": "RAFTKV_LISTEN_CLIENT", "value": f"0.0.0.0:{n.CLIENT_PORT}"},
        {"name": "RAFTKV_LISTEN_PEER", "value": f"0.0.0.0:{n.PEER_PORT}"},
        {
            "name": "RAFTKV_ADVERTISE_PEER_URL",
            "value": f"{peer_scheme}://{peer_host}:{n.PEER_PORT}",
        },
        {
            "name": "RAFTKV_ADVERTISE_CLIENT_URL",
            "value": f"{client_scheme}://{peer_host}:{n.CLIENT_PORT}",
        },
        # metadata.uid: a re-created RaftKV of the same name is another cluster.
        {"name": "RAFTKV_CLUSTER_TOKEN", "value": rkv.uid},
        {
            "name": "RAFTKV_PEER_SECRET",
            "valueFrom": {"secretKeyRef": {"name": n.secret_name(rkv.name), "key": n.SECRET_KEY}},
        },
        {
            "name": "RAFTKV_INITIAL_CLUSTER_STATE",
            "valueFrom": {
                "configMapKeyRef": {
                    "name": n.bootstrap_configmap(rkv.name),
                    "key": n.BOOTSTRAP_KEY,
                }
            },
        },
        {
            "name": "RAFTKV_DISCOVERY_ENDPOINTS",
            "value": t.with_scheme(
                n.client_service_url(rkv.name, rkv.namespace), client_scheme == "https"
            ),
        },
        {"name": "RAFTKV_SNAPSHOT_COUNT", "value": str(rkv.raft("snapshotCount", 10000))},
        {"name": "RAFTKV_TICK_MS", "value": str(rkv.raft("tickMs", 100))},
        {"name": "RAFTKV_ELECTION_TICKS", "value": str(rkv.raft("electionTicks", 10))},
        {"name": "RAFTKV_HEARTBEAT_TICKS", "value": str(rkv.raft("heartbeatTicks", 1))},
        {"name": "RAFTKV_LOG_FORMAT", "value": "json"},
        *(t.pod_env(secured) if secured is not None else []),
    ]


def _probe(path: str, *, period: int, failures: int, secured: t.TLSSpec | None = None) -> JSON:
    """httpGet on the client port (HTTPS with client TLS; the kubelet does not verify
    the certificate). With clientCertAuth the kubelet cannot present a certificate, so
    the probe runs in the container instead (``tls.PROBE_SCRIPT``)."""
    if secured is not None and secured.client_scheme_on and secured.client_cert_auth:
        return {
            "exec": {"command": ["python", "-c", t.PROBE_SCRIPT, path]},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failures,
        }
    on = secured is not None and secured.client_scheme_on
    return {
        "httpGet": {"path": path, "port": "client", "scheme": "HTTPS" if on else "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _spread(name: str) -> JSON:
    """Prefer one member per node (a node failure then costs one member, not quorum);
    only preferred, so a small cluster still schedules."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": n.selector_labels(name)},
                    },
                }
            ]
        }
    }


def _meta(rkv: RaftKVObject, name: str, component: str) -> JSON:
    return {
        "name": name,
        "namespace": rkv.namespace,
        "labels": n.common_labels(rkv.name, component),
    }
