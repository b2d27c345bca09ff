"""Pure judgements for the day-2 steps (a stopped and reverted roll, TLS turned on and
renewed, a backup and its restore), on objects as ``kubectl get -o json`` returns them.

Free of I/O, like :mod:`raftkv_e2e.state`, so what counts as done, stopped or failed
is unit-tested on hand-built objects (``tests/e2e_helpers/test_day2.py``); the steps
in ``test_raftkv_on_cluster_day2.py`` only fetch objects and wait on these.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509

from raftkv_e2e.state import conditions

JSON = dict[str, Any]

#: The pod template label naming the TLS ports a template was rendered with
#: (operator/raftkv_operator/tls.py ``TLS_LABEL``).
TLS_LABEL = "raftkv.dev/tls"
#: Where the backup Job mounts a PVC target (operator/raftkv_operator/backup.py): the
#: ``object`` in ``status.backup`` is a path under it, the restore wants it relative.
BACKUP_ROOT = "/backup"
#: Waiting reasons of a member that cannot pull its image.
PULL_FAILURES = ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull")


# --------------------------------------------------------------------------- rolls


def revision_of(pod: Mapping[str, Any], label: str) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(label)


def uids(pods: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}


def replaced_pods(before: Mapping[str, str], pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the pods whose uid differs from ``before`` (deleted and re-created),
    or that are gone; sorted."""
    now = uids(pods)
    return sorted(name for name, uid in before.items() if now.get(name) != uid)


def rollout_stopped(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``Degraded`` condition once the operator stopped a roll (``Degraded=True``
    with reason ``RolloutStopped`` and ``status.rollout.phase: Stopped``), else None."""
    degraded = conditions(obj).get("Degraded") or {}
    rollout = (obj.get("status") or {}).get("rollout") or {}
    if (
        degraded.get("status") == "True"
        and degraded.get("reason") == "RolloutStopped"
        and rollout.get("phase") == "Stopped"
    ):
        return degraded
    return None


def names_pod(message: str, pod: str) -> bool:
    """Whether an operator message names ``pod``: by name (``pod kv-2``) or, as the
    roll's messages do, by ordinal (``member 3 (pod 2)``)."""
    ordinal = pod.rpartition("-")[2]
    return f"pod {pod}" in message or (ordinal.isdigit() and f"(pod {ordinal})" in message)


def image_patch(image: str | None) -> JSON:
    """A merge patch setting ``spec.image`` (None removes it: back to the operator's
    member image, which is how the suite's RaftKV was created)."""
    return {"spec": {"image": image}}


def roll_back_not_done(
    obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], label: str, revision: str
) -> str | None:
    """Why a revert to ``revision`` is not finished: the roll must be ``Complete`` at
    that very revision, nothing ``Degraded``, every pod labelled with it."""
    rollout = (obj.get("status") or {}).get("rollout") or {}
    if rollout.get("targetRevision") != revision:
        return f"target revision {rollout.get('targetRevision')}, want {revision}"
    if rollout.get("phase") != "Complete":
        return f"rollout {rollout}"
    degraded = conditions(obj).get("Degraded") or {}
    if degraded.get("status") == "True":
        return f"Degraded: {degraded.get('reason')}: {degraded.get('message')}"
    stale = sorted(p["metadata"]["name"] for p in pods if revision_of(p, label) != revision)
    return f"pods {stale} not at revision {revision}" if stale else None


# --------------------------------------------------------------------------- TLS


def secret_bytes(secret: Mapping[str, Any] | None, key: str) -> bytes:
    """One decoded value of a Secret (``tls.crt``, ``ca.crt``); ValueError when absent."""
    data = (secret or {}).get("data") or {}
    raw = data.get(key)
    if not raw:
        name = ((secret or {}).get("metadata") or {}).get("name", "?")
        raise ValueError(f"Secret {name} has no {key}")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"Secret key {key} is not base64: {exc}") from None


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM (the first one of a chain) or DER."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def serial(data: bytes) -> int:
    return int(load_certificate(data).serial_number)


def dns_names(data: bytes) -> list[str]:
    """The DNS SANs of a certificate (empty without the extension)."""
    try:
        ext = load_certificate(data).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in ext.value.get_values_for_type(x509.DNSName)]


def pod_dns_name(pod: str, raftkv: str, namespace: str) -> str:
    """The name a member's certificate gives its pod (behind the headless peer
    Service), which is what a client inside the cluster dials."""
    return f"{pod}.{raftkv}-peer.{namespace}.svc"


def client_service_dns_name(raftkv: str, namespace: str) -> str:
    return f"{raftkv}-client.{namespace}.svc"


def tls_on_not_done(
    obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], ports: str = "client-peer"
) -> str | None:
    """Why turning TLS on is not finished: no transition left in status,
    ``CertificatesReady=True``, the roll ``Complete``, and every pod rendered with TLS
    on ``ports`` (the template's ``raftkv.dev/tls`` label). An ``AssertionError`` when
    the roll of a phase stopped: waiting cannot help then."""
    status = obj.get("status") or {}
    tls = status.get("tls") or {}
    if tls.get("transition"):
        rollout = status.get("rollout") or {}
        if rollout.get("phase") == "Stopped":
            raise AssertionError(f"the TLS transition's roll stopped: {rollout}")
        return f"transition {tls['transition']}, rollout {rollout.get('progress')}"
    ready = conditions(obj).get("CertificatesReady") or {}
    if ready.get("status") != "True":
        return f"CertificatesReady={ready.get('status')} ({ready.get('reason')})"
    rollout = status.get("rollout") or {}
    if rollout.get("phase") != "Complete":
        return f"rollout {rollout or 'not reported'}"
    plain = sorted(p["metadata"]["name"] for p in pods if revision_of(p, TLS_LABEL) != ports)
    return f"pods {plain} not rendered with TLS on {ports}" if plain else None


def renewed(before: Mapping[str, int], now: Mapping[str, int]) -> list[str]:
    """The Secrets whose certificate serial changed since ``before``."""
    return sorted(name for name, was in before.items() if now.get(name) not in (None, was))


# --------------------------------------------------------------------------- backups


def backup_done(obj: Mapping[str, Any], previous: str | None = None) -> Mapping[str, Any] | None:
    """``status.backup`` once a backup newer than job ``previous`` succeeded (with its
    object), else None; an ``AssertionError`` when the newest finished backup failed
    (``BackupFailing=True``): the next schedule would only fail the same way."""
    failing = conditions(obj).get("BackupFailing") or {}
    backup = (obj.get("status") or {}).get("backup") or {}
    if failing.get("status") == "True":
        raise AssertionError(
            f"the backup failed: {failing.get('message')} (status.backup: {backup})"
        )
    job = backup.get("lastSuccessfulJob")
    if not job or job == previous or not backup.get("object"):
        return None
    return backup


def restore_source(obj_path: str, root: str = BACKUP_ROOT) -> str:
    """``spec.restore.from`` for a backup ``status.backup.object``: an ``s3://`` URL
    as it is; a file on the backup claim as its path inside the claim (the backup Job
    mounts it at ``root``, the restore's init container elsewhere)."""
    if obj_path.startswith("s3://"):
        return obj_path
    prefix = root.rstrip("/") + "/"
    if not obj_path.startswith(prefix):
        raise ValueError(f"backup object {obj_path!r} is neither s3:// nor under {prefix}")
    relative = obj_path[len(prefix) :]
    if not relative or ".." in relative.split("/"):
        raise ValueError(f"backup object {obj_path!r} has no usable path inside the claim")
    return relative


def restored_not_done(obj: Mapping[str, Any]) -> str | None:
    """Why a restored RaftKV has not said ``Restored=True``; an ``AssertionError`` on
    ``RestoreFailed`` (the init container's one-line error is the message)."""
    restored = conditions(obj).get("Restored") or {}
    if restored.get("status") == "True":
        return None
    if restored.get("reason") == "RestoreFailed":
        raise AssertionError(f"the restore failed: {restored.get('message')}")
    return f"Restored={restored.get('status')} ({restored.get('reason')})"


def listing_differences(
    source: Mapping[str, bytes], restored: Mapping[str, bytes], limit: int = 20
) -> list[str]:
    """How two key → value listings differ (empty when equal), at most ``limit`` lines."""
    out: list[str] = []
    for key in sorted(set(source) | set(restored)):
        if key not in restored:
            out.append(f"{key}: missing from the restored cluster")
        elif key not in source:
            out.append(f"{key}: only in the restored cluster")
        elif source[key] != restored[key]:
            out.append(f"{key}: {source[key]!r:.40} before, {restored[key]!r:.40} restored")
        if len(out) >= limit:
            break
    return out


# --------------------------------------------------------------------------- lost nodes

#: The annotation that asks the operator for a forced recovery (docs/crd.md).
FORCE_ANNOTATION = "raftkv.dev/force-new-cluster"
#: What the admission policy answers for a pod of a lost member: how the suite knows
#: the policy is in force (a server-side dry run is refused with it).
LOST_NODE_MESSAGE = "raftkv e2e: this member's node is lost for good"
VAP = "validatingadmissionpolicies.admissionregistration.k8s.io"
VAP_BINDING = "validatingadmissionpolicybindings.admissionregistration.k8s.io"


def lost_nodes_policy(name: str, namespace: str, pods: Sequence[str]) -> list[JSON]:
    """A ValidatingAdmissionPolicy and its binding that refuse to create the pods
    ``pods`` in ``namespace``: their nodes (and local volumes) are gone, so the
    StatefulSet controller cannot bring them back, while every other pod (the survivor,
    whatever the operator re-creates) is untouched. Nothing else on the cluster is
    affected (the binding selects the namespace). ``pods`` empty: refuse nothing."""
    names = ", ".join(f"'{p}'" for p in sorted(pods))
    policy: JSON = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/created-by": "raftkv-e2e"}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "validations": [
                {
                    # A pod without a name yet (generateName) is none of them.
                    "expression": (
                        f"!has(object.metadata.name) || !(object.metadata.name in [{names}])"
                    ),
                    "message": LOST_NODE_MESSAGE,
                }
            ],
        },
    }
    binding: JSON = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/created-by": "raftkv-e2e"}},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    return [policy, binding]


def probe_pod(name: str, namespace: str, image: str) -> JSON:
    """A minimal pod named like a lost member, for a server-side dry run: refused with
    :data:`LOST_NODE_MESSAGE` once the policy is in force (the apiserver loads policies
    asynchronously), never stored."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "probe", "image": image}]},
    }


def volume_replaced(original_uid: str, pvc: Mapping[str, Any] | None) -> bool:
    """Whether the claim with ``original_uid`` is gone (the operator retired the
    member: its pod may come back now, on a new, empty volume). Not while it is only
    terminating: a pod created then would reference the old claim, which the
    ``pvc-protection`` finalizer then keeps for as long as that pod exists."""
    if pvc is None:
        return True
    return (pvc.get("metadata") or {}).get("uid") != original_uid


def recovery_phase(obj: Mapping[str, Any]) -> str | None:
    """``status.recovery.phase``; an ``AssertionError`` when the recovery was given up
    (``Aborted``: quorum came back, which the suite's lost nodes never allow)."""
    record = (obj.get("status") or {}).get("recovery") or {}
    phase = record.get("phase")
    if phase == "Aborted":
        raise AssertionError(f"the operator gave the recovery up: {record}")
    return str(phase) if phase else None
