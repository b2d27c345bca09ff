"""``status.recovery`` ↔ :class:`~raftkv_operator.recovery_model.Recovery`, and the other
inputs of the recovery rules read from the RaftKV object (annotation, condition).

The record is operator memory (like ``inFlight``): read back exactly, written only
with a resourceVersion precondition. Optional fields are written as null when unset,
so a merge patch never keeps a previous record's value under a new one.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from raftkv_operator.recovery_model import (
    ANNOTATION,
    ClearForceAnnotation,
    Recovery,
    RecoveryPhase,
    RefuseRecovery,
    Retiring,
    SetForcePod,
    UpdateRecovery,
)

JSON = dict[str, Any]


def _format(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def recovery_from_status(status: Mapping[str, Any] | None) -> Recovery | None:
    raw = (status or {}).get("recovery")
    if not raw:
        return None
    retiring_raw = raw.get("retiring")
    retiring = None
    if retiring_raw:
        retiring = Retiring(
            ordinal=int(retiring_raw["ordinal"]),
            member_id=int(retiring_raw["memberID"]),
            pod_uid=str(retiring_raw.get("podUID") or ""),
            pvc_uid=str(retiring_raw.get("pvcUID") or ""),
        )
    forced, completed = raw.get("forcedAt"), raw.get("completedAt")
    return Recovery(
        ordinal=int(raw["ordinal"]),
        member_id=int(raw["memberID"]),
        term=int(raw.get("term") or 0),
        last_index=int(raw.get("lastIndex") or 0),
        applied_index=int(raw.get("appliedIndex") or 0),
        requested=str(raw.get("requested") or ""),
        started_at=_parse(raw["startedAt"]),
        phase=RecoveryPhase(raw["phase"]),
        annotation_removed=bool(raw.get("annotationRemoved")),
        armed=bool(raw.get("armed")),
        forced_at=_parse(forced) if forced else None,
        completed_at=_parse(completed) if completed else None,
        retiring=retiring,
    )


def recovery_to_status(record: Recovery) -> JSON:
    """The whole ``status.recovery`` object, as a merge patch value."""
    retiring: JSON | None = None
    if record.retiring is not None:
        r = record.retiring
        retiring = {"ordinal": r.ordinal, "memberID": r.member_id}
        retiring["podUID"] = r.pod_uid or None
        retiring["pvcUID"] = r.pvc_uid or None
    return {
        "ordinal": record.ordinal,
        "memberID": record.member_id,
        "term": record.term,
        "lastIndex": record.last_index,
        "appliedIndex": record.applied_index,
        "requested": record.requested[:64],
        "startedAt": _format(record.started_at),
        "phase": record.phase.value,
        "annotationRemoved": record.annotation_removed,
        "armed": record.armed,
        "forcedAt": None if record.forced_at is None else _format(record.forced_at),
        "completedAt": None if record.completed_at is None else _format(record.completed_at),
        "retiring": retiring,
    }


def force_annotation(body: Mapping[str, Any]) -> str | None:
    """The ``raftkv.dev/force-new-cluster`` annotation of a RaftKV object, if set."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION)
    return None if value is None else str(value)


def quorum_lost_since(status: Mapping[str, Any] | None) -> float | None:
    """When ``Available`` turned False with reason QuorumLost (None: it does not say so)."""
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") != "Available":
            continue
        if cond.get("status") != "False" or cond.get("reason") != "QuorumLost":
            return None
        stamp = cond.get("lastTransitionTime")
        return _parse(stamp) if stamp else None
    return None


def describe_recovery(
    action: UpdateRecovery | RefuseRecovery | ClearForceAnnotation | SetForcePod,
) -> tuple[str, str]:
    """Reason and message of a recovery action (``status.describe`` for the rest)."""
    match action:
        case UpdateRecovery() | RefuseRecovery():
            return str(action.reason), action.message
        case ClearForceAnnotation():
            return "RemovingRecoveryAnnotation", action.message
        case SetForcePod(pod=None):
            return "ForceNewClusterCleared", (
                "the pod template no longer starts any member with --force-new-cluster"
            )
        case SetForcePod(pod=pod):
            return "ForcingNewCluster", (
                f"the pod template starts {pod} (only) with --force-new-cluster"
            )
    raise AssertionError(f"unknown action {action!r}")
