"""Scheduled backups (``spec.backup``): the CronJob, and what its Jobs tell us.

The operator does not take backups itself: a Kubernetes CronJob runs the member image's
``raftkv snapshot save`` (linearizable, SHA-256 verified, see docs/backup.md) against
the client Service, then prunes all but the newest ``retention`` backups. That keeps
the schedule working while the operator is down or busy, and keeps a multi-gigabyte
download out of the operator's process.

What the operator does, level-triggered on every pass:

- keeps the CronJob equal to what ``spec.backup`` renders (:func:`cronjob`; a hash of
  the rendered spec in an annotation says whether it must be rewritten), or deletes it
  when ``spec.backup`` is gone;
- reads the CronJob's Jobs and their pods (:func:`job_view`) and folds them into
  ``status.backup`` (:func:`backup_status`): the newest success (time, object, applied
  index, size, from the JSON the save wrote as the pod's termination message) and the
  newest failure. Folding into the previous status, not replacing it, keeps the last
  success known after the CronJob's history limit deleted its Job;
- derives the ``BackupFailing`` condition from that status alone
  (:func:`failing_condition`): True while the newest finished backup failed, cleared by
  the next success; and the Events of what changed (:func:`backup_events`).

Everything here is pure: the I/O lives in ``reconcile.py`` and ``kube.py``, so the
rules are tested on plain data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raftkv_operator import naming as n
from raftkv_operator import tls as t
from raftkv_operator.objects import DEFAULT_IMAGE, MEMBER_UID, RaftKVObject
from raftkv_operator.status import format_time, parse_time

JSON = dict[str, Any]

BACKUP_FAILING = "BackupFailing"
#: The CronJob's annotation holding a hash of the spec the operator rendered.
SPEC_HASH_ANNOTATION = "raftkv.dev/backup-spec-hash"
#: Where the backup container mounts a PVC target.
BACKUP_ROOT = "/backup"
#: Where the container writes ``raftkv snapshot save --json``: the kubelet makes the
#: file's content the container's termination message, which the operator reads from
#: the pod's status (no log access needed).
RESULT_FILE = "/dev/termination-log"
#: Kept Jobs: enough to see the newest success and failure; status keeps the rest.
HISTORY_LIMIT = 3
#: A backup Job that has not finished after this long is killed (and counts as failed).
ACTIVE_DEADLINE_SECONDS = 3600

#: The backup container's script. Values come from the environment, never from string
#: formatting, so nothing from the spec is ever parsed by the shell.
S3_SCRIPT = """\
set -eu
raftkv snapshot save "$RAFTKV_BACKUP_TARGET" --endpoints "$RAFTKV_BACKUP_ENDPOINTS" \\
    --json > "$RAFTKV_BACKUP_RESULT"
raftkv snapshot prune "$RAFTKV_BACKUP_TARGET" --keep "$RAFTKV_BACKUP_KEEP" --json
"""

#: For a PVC target: files ``raftkv-<UTC time>.snapshot`` (names sort by time), and the
#: prune is the newest ``KEEP`` names kept, the others deleted. Only names of exactly
#: that shape are counted or deleted, so other files in the directory are safe.
PVC_SCRIPT = """\
set -eu
dir="$RAFTKV_BACKUP_ROOT/$RAFTKV_BACKUP_PATH"
mkdir -p "$dir"
target="$dir/raftkv-$(date -u +%Y%m%dT%H%M%SZ).snapshot"
raftkv snapshot save "$target" --endpoints "$RAFTKV_BACKUP_ENDPOINTS" \\
    --json > "$RAFTKV_BACKUP_RESULT"
ls -1 "$dir" | grep -E '^raftkv-[0-9]{8}T[0-9]{6}Z\\.snapshot$' | sort -r \\
    | tail -n +"$((RAFTKV_BACKUP_KEEP + 1))" | while read -r old; do
    rm -f -- "$dir/$old"
    echo "pruned $dir/$old"
done
"""


# --------------------------------------------------------------------------- names


#: The longest CronJob name the API accepts (its Jobs append an 11-character suffix).
MAX_CRONJOB_NAME = 52


def cronjob_name(name: str) -> str:
    """``<name>-backup``; a name too long for a CronJob is cut and made unique again
    with a hash of the whole name."""
    full = f"{name}-backup"
    if len(full) <= MAX_CRONJOB_NAME:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    keep = MAX_CRONJOB_NAME - len("-backup") - len(digest) - 1
    return f"{name[:keep].rstrip('-.')}-{digest}-backup"


def selector_labels(name: str) -> dict[str, str]:
    """Labels of the backup CronJob, its Jobs and their pods. Deliberately *not* the
    members' selector labels: a backup pod must never count as a member, join the
    peer Service or the PodDisruptionBudget."""
    return {n.NAME_LABEL: "raftkv-backup", n.INSTANCE_LABEL: name}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def labels(name: str) -> dict[str, str]:
    return {
        **selector_labels(name),
        n.COMPONENT_LABEL: "backup",
        n.MANAGED_BY_LABEL: "raftkv-operator",
    }


# --------------------------------------------------------------------------- the CronJob


def spec_of(rkv: RaftKVObject) -> Mapping[str, Any] | None:
    """``spec.backup``, or None when backups are off."""
    raw = rkv.spec.get("backup")
    return raw if isinstance(raw, Mapping) and raw else None


def s3_prefix_url(s3: Mapping[str, Any]) -> str:
    """``s3://bucket/prefix/``: saving to a prefix names the object by time and index."""
    prefix = str(s3.get("prefix") or "").strip("/")
    return f"s3://{s3['bucket']}/{prefix + '/' if prefix else ''}"


#: Where the backup container mounts the client port's TLS Secret.
TLS_MOUNT = "/etc/raftkv/tls"
TLS_VOLUME = "server-tls"


def cronjob(
    rkv: RaftKVObject,
    default_image: str = DEFAULT_IMAGE,
    secured: t.TLSSpec | bool | None = True,
) -> JSON | None:
    """The batch/v1 CronJob ``spec.backup`` renders (None when backups are off).

    ``concurrencyPolicy: Forbid``: two saves at once would only double the load on the
    leader. ``backoffLimit: 0``: a failed save is reported, and the next schedule is
    the retry; a retry loop would hide the failure from ``status.backup``.

    ``secured`` is the TLS setting the members are reached with (True: ``spec.tls``;
    the reconcile pass gives the phase of a TLS transition). With client TLS the save
    dials https, trusts ``ca.crt`` of ``<name>-server-tls`` (mounted whole, so a
    renewal reaches the next Job) and, with clientCertAuth, presents that Secret's
    certificate (it carries clientAuth), through the CLI's ``RAFTKV_CACERT`` /
    ``RAFTKV_CERT`` / ``RAFTKV_KEY``.
    """
    backup = spec_of(rkv)
    if backup is None:
        return None
    if secured is True:
        secured = t.spec_of(rkv.spec)
    client_tls = isinstance(secured, t.TLSSpec) and secured.client and secured.client_scheme_on
    endpoints = t.with_scheme(n.client_service_url(rkv.name, rkv.namespace), client_tls)
    env: list[JSON] = [
        {"name": "RAFTKV_BACKUP_ENDPOINTS", "value": endpoints},
        {"name": "RAFTKV_BACKUP_KEEP", "value": str(int(backup.get("retention", 7)))},
        {"name": "RAFTKV_BACKUP_RESULT", "value": RESULT_FILE},
    ]
    volumes: list[JSON] = []
    mounts: list[JSON] = []
    if client_tls:
        assert isinstance(secured, t.TLSSpec)
        env.append({"name": "RAFTKV_CACERT", "value": f"{TLS_MOUNT}/ca.crt"})
        if secured.client_cert_auth:
            env.append({"name": "RAFTKV_CERT", "value": f"{TLS_MOUNT}/tls.crt"})
            env.append({"name": "RAFTKV_KEY", "value": f"{TLS_MOUNT}/tls.key"})
        secret = {"secretName": t.server_secret(rkv.name), "defaultMode": 0o440}
        volumes.append({"name": TLS_VOLUME, "secret": secret})
        mounts.append({"name": TLS_VOLUME, "mountPath": TLS_MOUNT, "readOnly": True})
    if backup.get("s3"):
        s3 = backup["s3"]
        script = S3_SCRIPT
        env.append({"name": "RAFTKV_BACKUP_TARGET", "value": s3_prefix_url(s3)})
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            ref = {"name": str(s3["credentialsSecret"]), "key": key}
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
        if s3.get("endpoint"):
            env.append({"name": "AWS_ENDPOINT_URL_S3", "value": str(s3["endpoint"])})
        if s3.get("region"):
            env.append({"name": "AWS_REGION", "value": str(s3["region"])})
    else:
        pvc = backup["pvc"]
        script = PVC_SCRIPT
        env.append({"name": "RAFTKV_BACKUP_ROOT", "value": BACKUP_ROOT})
        env.append({"name": "RAFTKV_BACKUP_PATH", "value": str(pvc.get("path", "raftkv"))})
        volumes.append(
            {"name": "backup", "persistentVolumeClaim": {"claimName": str(pvc["claimName"])}}
        )
        mounts.append({"name": "backup", "mountPath": BACKUP_ROOT})
    container: JSON = {
        "name": "backup",
        "image": str(rkv.spec.get("image") or default_image),
        "command": ["sh", "-c", script],
        "env": env,
        # The save's JSON result on success; the log's tail (the error) on failure.
        "terminationMessagePath": RESULT_FILE,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if mounts:
        container["volumeMounts"] = mounts
    if rkv.spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = rkv.spec["imagePullPolicy"]
    pod: JSON = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": MEMBER_UID,
            "runAsGroup": MEMBER_UID,
            "fsGroup": MEMBER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if volumes:
        pod["volumes"] = volumes
    spec: JSON = {
        "schedule": str(backup["schedule"]),
        "concurrencyPolicy": "Forbid",
        "suspend": bool(backup.get("suspend", False)),
        "successfulJobsHistoryLimit": HISTORY_LIMIT,
        "failedJobsHistoryLimit": HISTORY_LIMIT,
        "jobTemplate": {
            "metadata": {"labels": labels(rkv.name)},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": ACTIVE_DEADLINE_SECONDS,
                "template": {"metadata": {"labels": labels(rkv.name)}, "spec": pod},
            },
        },
    }
    if backup.get("timeZone"):
        spec["timeZone"] = str(backup["timeZone"])
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(rkv.name),
            "namespace": rkv.namespace,
            "labels": labels(rkv.name),
            "annotations": {SPEC_HASH_ANNOTATION: spec_hash(spec)},
        },
        "spec": spec,
    }


def spec_hash(spec: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over the canonical JSON of a rendered CronJob spec."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def needs_update(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether the CronJob we find is not the one we render (by the hash we wrote:
    comparing specs would see every default the apiserver filled in as a change)."""
    have = ((existing.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    return bool(have != wanted["metadata"]["annotations"][SPEC_HASH_ANNOTATION])


# --------------------------------------------------------------------------- the Jobs


@dataclass(frozen=True)
class JobView:
    """One backup Job, as far as the status needs it."""

    name: str
    #: Seconds; orders Jobs (creationTimestamp, then completion or failure time).
    created: float
    finished: float | None = None
    succeeded: bool = False
    failed: bool = False
    #: The parsed ``raftkv snapshot save --json`` of a succeeded Job.
    result: Mapping[str, Any] | None = None
    #: Why a failed Job failed (the pod's termination message, else the Job's condition).
    message: str = ""


def _time(value: Any) -> float | None:
    if not value:
        return None
    try:
        return parse_time(str(value))
    except ValueError:
        return None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        state = container.get("state") or {}
        if state.get("terminated"):
            return dict(state["terminated"])
    return None


def job_view(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobView:
    """A Job and the pods it made (matched by the ``job-name`` label) as a
    :class:`JobView`. A succeeded Job whose termination message is not the save's JSON
    still counts as succeeded, with what is known left out."""
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    name = str(meta.get("name") or "")
    conds = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    succeeded = "Complete" in conds or (int(status.get("succeeded") or 0) > 0 and not conds)
    failed = "Failed" in conds and not succeeded
    finished: float | None = None
    if succeeded:
        finished = _time(status.get("completionTime")) or _time(
            (conds.get("Complete") or {}).get("lastTransitionTime")
        )
    elif failed:
        finished = _time((conds.get("Failed") or {}).get("lastTransitionTime"))
    created = _time(meta.get("creationTimestamp")) or 0.0
    if (succeeded or failed) and finished is None:
        finished = created
    mine = [
        p
        for p in pods
        if ((p.get("metadata") or {}).get("labels") or {}).get("job-name") == name
        or ((p.get("metadata") or {}).get("labels") or {}).get("batch.kubernetes.io/job-name")
        == name
    ]
    terminations = [t for t in (_terminated(p) for p in mine) if t is not None]
    result: Mapping[str, Any] | None = None
    message = ""
    if succeeded:
        for t in terminations:
            if int(t.get("exitCode") or 0) == 0:
                result = parse_result(str(t.get("message") or ""))
                if result is not None:
                    break
    elif failed:
        texts = [str(t.get("message") or "").strip() for t in terminations]
        texts = [t for t in texts if t]
        why = (conds.get("Failed") or {}).get("message") or (conds.get("Failed") or {}).get(
            "reason"
        )
        message = texts[-1] if texts else str(why or "the backup Job failed")
    return JobView(name, created, finished, succeeded, failed, result, message[-4096:])


def parse_result(text: str) -> Mapping[str, Any] | None:
    """The save's ``--json`` object from a termination message, or None: the last
    object that starts at the beginning of a line and runs to the end of the text
    (``--json`` prints it indented over several lines; a warning before it is noise)."""
    lines = text.strip().splitlines()
    for start in reversed(range(len(lines))):
        if not lines[start].startswith("{"):
            continue
        try:
            value = json.loads("\n".join(lines[start:]))
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


# --------------------------------------------------------------------------- status


def backup_status(jobs: Sequence[JobView], previous: Mapping[str, Any] | None) -> JSON:
    """``status.backup``: the newest success and the newest failure, from the Jobs that
    still exist folded into what status said before (a Job older than what status
    records never moves it back; one deleted by the history limit is not forgotten)."""
    out: JSON = dict(previous or {})
    finished = [j for j in jobs if j.finished is not None]
    wins = [j for j in finished if j.succeeded]
    losses = [j for j in finished if j.failed]
    if wins:
        best = max(wins, key=lambda j: (j.finished or 0.0, j.created, j.name))
        known = _time(out.get("lastSuccessfulTime"))
        assert best.finished is not None
        if known is None or best.finished >= known:
            result = best.result or {}
            out["lastSuccessfulTime"] = format_time(best.finished)
            out["lastSuccessfulJob"] = best.name
            for field, key in (
                ("object", "file"),
                ("appliedIndex", "applied_index"),
                ("keys", "keys"),
                ("bytes", "bytes"),
                ("sha256", "sha256"),
            ):
                value = result.get(key)
                if field == "object":
                    out[field] = str(value)[:4096] if value is not None else None
                elif field == "sha256":  # the CRD allows 64 characters
                    out[field] = str(value)[:64] if value is not None else None
                else:
                    out[field] = int(value) if isinstance(value, int) else None
    if losses:
        worst = max(losses, key=lambda j: (j.finished or 0.0, j.created, j.name))
        known = _time(out.get("lastFailedTime"))
        assert worst.finished is not None
        if known is None or worst.finished >= known:
            out["lastFailedTime"] = format_time(worst.finished)
            out["lastFailedJob"] = worst.name
            out["lastFailure"] = worst.message[-4096:]
    # A merge patch drops nulls on write: leave unknown fields out instead of null.
    return {k: v for k, v in out.items() if v is not None}


def is_failing(status: Mapping[str, Any] | None) -> bool:
    """The newest finished backup failed (a failure not followed by a success)."""
    status = status or {}
    failed = _time(status.get("lastFailedTime"))
    if failed is None:
        return False
    succeeded = _time(status.get("lastSuccessfulTime"))
    return succeeded is None or failed > succeeded


def failing_condition(status: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """(status, reason, message) of ``BackupFailing``, from ``status.backup`` alone."""
    status = status or {}
    if is_failing(status):
        return (
            "True",
            "BackupFailed",
            f"backup Job {status.get('lastFailedJob')} failed: {status.get('lastFailure', '')}",
        )
    if status.get("lastSuccessfulTime"):
        return (
            "False",
            "BackupSucceeded",
            f"last backup {status.get('object') or status.get('lastSuccessfulJob')} "
            f"at {status['lastSuccessfulTime']}",
        )
    return ("False", "NoBackupYet", "no backup Job has finished yet")


def backup_events(
    before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """(type, reason, message) Events for what changed between two ``status.backup``:
    one per newly finished Job, the Warning for a failure."""
    before = before or {}
    out: list[tuple[str, str, str]] = []
    if after.get("lastSuccessfulJob") and after.get("lastSuccessfulJob") != before.get(
        "lastSuccessfulJob"
    ):
        out.append(
            (
                "Normal",
                "BackupSucceeded",
                f"backup Job {after['lastSuccessfulJob']} wrote "
                f"{after.get('object', '?')} (applied index {after.get('appliedIndex', '?')}, "
                f"{after.get('bytes', '?')} bytes)",
            )
        )
    if after.get("lastFailedJob") and after.get("lastFailedJob") != before.get("lastFailedJob"):
        out.append(
            (
                "Warning",
                "BackupFailed",
                f"backup Job {after['lastFailedJob']} failed: {after.get('lastFailure', '')}",
            )
        )
    return out
