"""Restore (``spec.restore``): a new RaftKV whose first member starts from a backup.

How it works, and why this way:

- Every member pod gets an init container (:func:`init_container`) that runs
  ``raftkv snapshot restore`` (SHA-256 and snapshot verified before anything is
  written; a new cluster whose token is the RaftKV's uid, so its cluster id is the one
  the members expect). The StatefulSet has one pod template for all ordinals, so the
  script itself decides, and restores only when all of these hold: it is ordinal 0,
  the bootstrap ConfigMap still says ``new`` (the cluster was never bootstrapped:
  ordinal 0 replaced later with an empty volume must join, never restore), and the
  data dir holds nothing (a restart after a successful restore keeps its data). It
  restores into a staging directory on the same volume and then moves the result into
  place, the identity file last, so an ext4 ``lost+found`` does not block it.
- ``raftkv snapshot restore`` picks the member id of the new cluster itself; the
  operator recorded another id for ordinal 0 before any pod existed. While the
  bootstrap is in flight, a one-voter cluster led by a member at ordinal 0's peer URL
  can only be the restored one, so the planner adopts its id (:func:`bootstrap_step`):
  ordinal 0 is mapped to it and the id counter moves past it, so no id is ever
  reused. Then the bootstrap completes and the cluster grows as usual.
- A restore that fails (missing or corrupt backup, no access) fails the init container
  with one line on stderr; ``FallbackToLogsOnError`` makes that line the termination
  message, which :func:`failure` reads from the pod status. The condition
  ``Restored=False/RestoreFailed`` carries it, and the planner waits: the bootstrap
  never completes, so no member is added (nothing half-made grows). The kubelet
  retries the init container, so a backup that appears later is still restored.

``spec.restore`` is immutable (CEL), so the init container never changes the member
revision of a running cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raftkv_operator import naming as n
from raftkv_operator.model import (
    Action,
    Bookkeeping,
    Change,
    ChangeKind,
    Observed,
    Reason,
    UpdateStatus,
    Wait,
)

JSON = dict[str, Any]

RESTORE_CONTAINER = "restore"
RESTORED = "Restored"
#: Where a PVC holding the backup is mounted (read-only) in the init container.
SOURCE_ROOT = "/restore"

#: The init container's script; every value comes from the environment.
SCRIPT = """\
set -eu
case "$POD_NAME" in
    *-0) ;;
    *) echo "not ordinal 0: nothing to restore"; exit 0 ;;
esac
if [ "$RAFTKV_INITIAL_CLUSTER_STATE" != new ]; then
    echo "the cluster was bootstrapped already: nothing to restore"; exit 0
fi
stage="$RAFTKV_DATA_DIR/.raftkv-restore"
for entry in "$RAFTKV_DATA_DIR"/* "$RAFTKV_DATA_DIR"/.[!.]*; do
    [ -e "$entry" ] || continue
    case "${entry##*/}" in
        lost+found|.raftkv-restore) ;;
        *) echo "$RAFTKV_DATA_DIR holds data: not restoring again"; exit 0 ;;
    esac
done
rm -rf "$stage"
raftkv snapshot restore "$RAFTKV_RESTORE_FROM" --data-dir "$stage" --name "$POD_NAME" \\
    --advertise-peer-url "$RAFTKV_ADVERTISE_PEER_URL" \\
    --cluster-token "$RAFTKV_CLUSTER_TOKEN" --json > "$RAFTKV_RESTORE_RESULT"
for entry in "$stage"/* "$stage"/.[!.]*; do
    [ -e "$entry" ] || continue
    [ "${entry##*/}" = member.json ] || mv "$entry" "$RAFTKV_DATA_DIR/"
done
mv "$stage/member.json" "$RAFTKV_DATA_DIR/member.json"
rmdir "$stage"
"""


def spec_of(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    raw = spec.get("restore")
    return raw if isinstance(raw, Mapping) and raw.get("from") else None


def source(restore: Mapping[str, Any]) -> str:
    """What ``raftkv snapshot restore`` reads: the s3:// URL, or the path in the claim."""
    where = str(restore["from"])
    if restore.get("pvc"):
        return f"{SOURCE_ROOT}/{where.lstrip('/')}"
    return where


def init_container(
    spec: Mapping[str, Any], member_env: list[JSON], image: str
) -> tuple[JSON, list[JSON]] | None:
    """The restore init container and the volumes it needs (None without spec.restore).
    It gets the member's own environment (name, data dir, advertised peer URL, cluster
    token, bootstrap state), so it restores exactly the member that will start."""
    restore = spec_of(spec)
    if restore is None:
        return None
    env = [
        *member_env,
        {"name": "RAFTKV_RESTORE_FROM", "value": source(restore)},
        {"name": "RAFTKV_RESTORE_RESULT", "value": "/dev/termination-log"},
    ]
    volumes: list[JSON] = []
    mounts: list[JSON] = [{"name": n.DATA_VOLUME, "mountPath": n.DATA_DIR}]
    s3 = restore.get("s3") or {}
    if s3.get("credentialsSecret"):
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = {"name": str(s3["credentialsSecret"]), "key": key}
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    if s3.get("endpoint"):
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": str(s3["endpoint"])})
    if s3.get("region"):
        env.append({"name": "AWS_REGION", "value": str(s3["region"])})
    if restore.get("pvc"):
        claim = {"claimName": str(restore["pvc"]), "readOnly": True}
        volumes.append({"name": "restore-source", "persistentVolumeClaim": claim})
        mounts.append({"name": "restore-source", "mountPath": SOURCE_ROOT, "readOnly": True})
    container: JSON = {
        "name": RESTORE_CONTAINER,
        "image": image,
        "command": ["sh", "-c", SCRIPT],
        "env": env,
        "volumeMounts": mounts,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    return container, volumes


def failure(pod: Mapping[str, Any] | None) -> str | None:
    """Why the restore init container of ``pod`` failed (its termination message, or
    the exit code), if the kubelet says it did: now (``state``) or on its last try
    while it waits to be retried (``lastState``, CrashLoopBackOff). None otherwise."""
    if pod is None:
        return None
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") != RESTORE_CONTAINER:
            continue
        for which in ("state", "lastState"):
            done = (status.get(which) or {}).get("terminated") or {}
            code = int(done.get("exitCode") or 0)
            if done and code != 0:
                text = str(done.get("message") or "").strip()
                return (text or f"exit code {code}")[-4096:]
            if done and which == "state":
                return None  # it succeeded: an older failure no longer matters
    return None


def bootstrap_step(observed: Observed, change: Change) -> Action | None:
    """During the bootstrap of a RaftKV with ``spec.restore``: adopt the restored
    member's id (see the module docstring). None when there is nothing to adopt (the
    plain bootstrap rules apply)."""
    spec = observed.spec
    if not spec.restore_from:
        return None
    raft = observed.raft
    leader = raft.leader_id
    if raft.reachable and leader is not None and leader != change.member_id:
        pod = observed.pod(0)
        only = raft.members
        if (
            pod is not None
            and pod.member_id == leader
            and len(only) == 1
            and only[0].id == leader
            and not only[0].learner
            and only[0].peer_url == spec.peer_url(0)
            and leader not in {m for k, m in observed.status.members.items() if k != 0}
        ):
            book = observed.status
            adopted = Bookkeeping(
                cluster_id=book.cluster_id,
                members={**book.members, 0: leader},
                next_member_id=max(book.next_member_id, leader + 1),
                in_flight=Change(ChangeKind.BOOTSTRAP, 0, leader),
            )
            return UpdateStatus(
                adopted,
                Reason.RESTORED_MEMBER_ADOPTED,
                f"ordinal 0 was restored from {spec.restore_from} as member {leader} "
                f"(recorded as {change.member_id} before the restore)",
            )
    return None


def failed_wait(observed: Observed) -> Wait | None:
    """The bootstrap waits on a failed restore, saying why (after the rolling rules had
    their chance to replace a pod at a stale template: a new image may be the fix)."""
    if not observed.spec.restore_from or observed.restore_failure is None:
        return None
    return Wait(
        Reason.RESTORE_FAILED,
        f"restoring {observed.spec.restore_from} failed: {observed.restore_failure}",
    )


def restored_condition(observed: Observed, bootstrapped: bool) -> tuple[str, str, str]:
    """``Restored``: True once ordinal 0 leads the restored cluster."""
    spec = observed.spec
    if bootstrapped:
        return ("True", "Restored", f"bootstrapped from {spec.restore_from}")
    if observed.restore_failure is not None:
        return ("False", "RestoreFailed", observed.restore_failure)
    return ("False", "Restoring", f"restoring {spec.restore_from} into ordinal 0")
