"""Translation between the RaftKV ``status`` and the planner's records.

Two kinds of fields live in status and are treated differently:

- the operator's memory (:class:`~raftkv_operator.model.Bookkeeping`: clusterID,
  nextMemberID, memberIDs, inFlight) and the restart record of a rolling change
  (:class:`~raftkv_operator.model.Restart`: restartInFlight) are read back exactly
  and only ever written with a resourceVersion precondition, because the planner
  trusts them;
- the report (replicas, readyReplicas, leader, term, commitIndex, members,
  conditions, observedGeneration, selector, rollout) is derived from the latest
  observation and is safe to overwrite at any time.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from raftkv_operator import naming
from raftkv_operator.model import (
    Action,
    AddLearner,
    Bookkeeping,
    Change,
    ChangeKind,
    CreateChildren,
    DeletePod,
    DeletePVC,
    Done,
    GrowStatefulSet,
    Observed,
    PromoteLearner,
    RemoveMember,
    ReplaceMember,
    Restart,
    SetQuorumLost,
    ShrinkStatefulSet,
    TransferLeadership,
    UpdateRestart,
    UpdateStatefulSet,
    UpdateStatus,
    Wait,
)
from raftkv_operator.planner import quorum_problem
from raftkv_operator.recovery_model import (
    ClearForceAnnotation,
    RefuseRecovery,
    SetForcePod,
    UpdateRecovery,
)
from raftkv_operator.recovery_status import describe_recovery
from raftkv_operator.restore import RESTORED, restored_condition
from raftkv_operator.rolling import stale_members, updated_members

JSON = dict[str, Any]

AVAILABLE, PROGRESSING, DEGRADED, READY = "Available", "Progressing", "Degraded", "Ready"
ROLLING = "Rolling"
#: status.rollout.phase values.
PHASE_COMPLETE, PHASE_ROLLING, PHASE_STOPPED = "Complete", "Rolling", "Stopped"

# --------------------------------------------------------------------------- bookkeeping


def bookkeeping_from_status(status: Mapping[str, Any] | None) -> Bookkeeping:
    """The operator's memory as persisted; a missing or empty status is a fresh one."""
    status = status or {}
    members = {int(m["ordinal"]): int(m["id"]) for m in status.get("memberIDs") or []}
    raw = status.get("inFlight")
    in_flight = None
    if raw:
        since = raw.get("caughtUpSince")
        in_flight = Change(
            kind=ChangeKind(raw["kind"]),
            ordinal=int(raw["ordinal"]),
            member_id=int(raw["memberID"]),
            old_member_id=int(raw["oldMemberID"]) if raw.get("oldMemberID") else None,
            caught_up_since=parse_time(since) if since else None,
        )
    return Bookkeeping(
        cluster_id=status.get("clusterID") or None,
        members=members,
        next_member_id=int(status.get("nextMemberID") or 1),
        in_flight=in_flight,
    )


def bookkeeping_to_status(book: Bookkeeping) -> JSON:
    """A merge patch that replaces every bookkeeping field (null clears inFlight)."""
    in_flight: JSON | None = None
    change = book.in_flight
    if change is not None:
        in_flight = {
            "kind": change.kind.value,
            "ordinal": change.ordinal,
            "memberID": change.member_id,
        }
        if change.old_member_id is not None:
            in_flight["oldMemberID"] = change.old_member_id
        if change.caught_up_since is not None:
            in_flight["caughtUpSince"] = format_time(change.caught_up_since)
    out: JSON = {
        "nextMemberID": book.next_member_id,
        "memberIDs": [{"ordinal": k, "id": v} for k, v in sorted(book.members.items())],
        "inFlight": in_flight,
    }
    if book.cluster_id is not None:
        out["clusterID"] = book.cluster_id
    return out


def restart_from_status(status: Mapping[str, Any] | None) -> Restart | None:
    """The restart record of a rolling change (``status.restartInFlight``), if any."""
    raw = (status or {}).get("restartInFlight")
    if not raw:
        return None
    since = raw.get("readySince")
    return Restart(
        ordinal=int(raw["ordinal"]),
        member_id=int(raw["memberID"]),
        revision=str(raw["revision"]),
        started_at=parse_time(raw["startedAt"]),
        ready_since=parse_time(since) if since else None,
        failed=raw.get("failed") or None,
    )


def restart_to_status(record: Restart | None) -> JSON:
    """A merge patch that replaces the restart record (null clears it). Optional fields
    are written as null when unset: a merge patch would otherwise keep the previous
    record's ``failed`` under a new record."""
    if record is None:
        return {"restartInFlight": None}
    out: JSON = {
        "ordinal": record.ordinal,
        "memberID": record.member_id,
        "revision": record.revision,
        "startedAt": format_time(record.started_at),
        "readySince": None if record.ready_since is None else format_time(record.ready_since),
        "failed": None if record.failed is None else record.failed[:4096],
    }
    return {"restartInFlight": out}


def format_time(seconds: float) -> str:
    """RFC 3339 with microseconds: the stabilization clock must survive a round trip."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def bootstrap_state(book: Bookkeeping) -> str:
    """What the bootstrap ConfigMap must say: ``new`` only until ordinal 0 leads."""
    change = book.in_flight
    if book.cluster_id is None or (change is not None and change.kind is ChangeKind.BOOTSTRAP):
        return "new"
    return "existing"


# --------------------------------------------------------------------------- the report


def describe(action: Action) -> tuple[str, str]:
    """A CamelCase reason and a message for any action (Events and conditions)."""
    match action:
        case UpdateStatus() | Wait() | Done() | SetQuorumLost() | CreateChildren():
            return str(action.reason), getattr(action, "message", "")
        case UpdateRestart():
            return str(action.reason), action.message
        case UpdateStatefulSet():
            return "UpdatingStatefulSet", (
                f"writing the pod template of member revision {action.revision} (OnDelete)"
            )
        case DeletePod(why=why) if why:
            return (
                "DeletingPod",
                f"deleting pod {action.ordinal} (member {action.member_id}): {why}",
            )
        case DeletePod():
            return "DeletingPod", (
                f"deleting pod {action.ordinal} (member {action.member_id}) so that it is "
                f"recreated at the new revision"
            )
        case AddLearner():
            return "AddingLearner", (
                f"adding member {action.member_id} ({action.name}) as a learner at "
                f"{action.peer_url}"
            )
        case GrowStatefulSet():
            return "ScalingStatefulSet", f"growing the StatefulSet to {action.replicas}"
        case ShrinkStatefulSet():
            return "ScalingStatefulSet", f"shrinking the StatefulSet to {action.replicas}"
        case PromoteLearner():
            return "PromotingLearner", f"promoting learner {action.member_id} to voter"
        case TransferLeadership():
            return "TransferringLeadership", (
                f"moving leadership from member {action.from_id} to {action.to_id}"
            )
        case RemoveMember():
            return "RemovingMember", f"removing member {action.member_id} from Raft"
        case DeletePVC():
            return "DeletingPVC", f"deleting the data volume of ordinal {action.ordinal}"
        case ReplaceMember():
            return "ReplacingMember", (
                f"ordinal {action.ordinal} lost its data: replacing member {action.old_id} "
                f"with {action.new_id}"
            )
        case UpdateRecovery() | RefuseRecovery() | ClearForceAnnotation() | SetForcePod():
            return describe_recovery(action)
    raise AssertionError(f"unknown action {action!r}")


def report(
    observed: Observed,
    action: Action,
    generation: int,
    previous: Sequence[Mapping[str, Any]] = (),
    now: float | None = None,
) -> JSON:
    """The status fields derived from one observation and the action planned from it."""
    raft = observed.raft
    spec = observed.spec
    mapped = observed.status.members
    names = {m.id: m.name for m in raft.members}
    ready = sum(1 for member_id in mapped.values() if member_id in raft.ready_ids)
    out: JSON = {
        "replicas": len(raft.members) if raft.reachable else len(mapped),
        "readyReplicas": ready,
        "term": raft.term,
        "commitIndex": raft.commit_index,
        "members": [
            {"id": m.id, "name": m.name, "peerURL": m.peer_url, "learner": m.learner}
            for m in sorted(raft.members, key=lambda m: m.id)
        ],
        "observedGeneration": generation,
        "selector": naming.selector_string(spec.name),
        "conditions": conditions(observed, action, generation, previous, now),
    }
    if spec.member_revision:
        out["rollout"] = rollout(observed)
    if raft.leader_id is not None:
        out["leaderID"] = raft.leader_id
        out["leader"] = names.get(raft.leader_id, str(raft.leader_id))
    else:
        out["leaderID"] = None
        out["leader"] = None
    return out


def rollout(observed: Observed) -> JSON:
    """``status.rollout``: members at the desired revision, the one being restarted.

    ``progress`` ("2/3") is what ``kubectl get rkv`` shows in its UPDATED column: a
    printer column shows one field, it cannot divide two."""
    record = observed.restart
    total = len(observed.status.members)
    updated = len(updated_members(observed))
    if record is not None and record.failed is not None:
        phase = PHASE_STOPPED
    elif record is not None or stale_members(observed):
        phase = PHASE_ROLLING
    else:
        phase = PHASE_COMPLETE
    # "" rather than null: the report is a merge patch compared with what is stored,
    # and a null would be dropped on write and so never compare equal.
    current = ""
    if record is not None and record.revision == observed.spec.member_revision:
        current = observed.spec.member_name(record.ordinal)
    return {
        "targetRevision": observed.spec.member_revision,
        "updated": updated,
        "total": total,
        "progress": f"{updated}/{total}",
        "current": current,
        "phase": phase,
    }


def rolling_condition(observed: Observed) -> tuple[str, str, str]:
    """``Rolling``: True while members run another revision than the spec renders."""
    state = rollout(observed)
    target, progress = state["targetRevision"], state["progress"]
    if state["phase"] == PHASE_STOPPED:
        assert observed.restart is not None and observed.restart.failed is not None
        return ("False", "RolloutStopped", observed.restart.failed)
    if state["phase"] == PHASE_ROLLING:
        now = f"; restarting {state['current']}" if state["current"] else ""
        return ("True", "RollingUpdate", f"{progress} members at revision {target}{now}")
    return ("False", "UpToDate", f"{progress} members at revision {target}")


def conditions(
    observed: Observed,
    action: Action,
    generation: int,
    previous: Sequence[Mapping[str, Any]] = (),
    now: float | None = None,
) -> list[JSON]:
    book, raft = observed.status, observed.raft
    bootstrapping = bootstrap_state(book) == "new"
    problem = quorum_problem(raft)

    if bootstrapping:
        available = ("False", "Bootstrapping", "the first member has not started leading yet")
    elif problem is not None:
        available = ("False", "QuorumLost", problem)
    else:
        voters = raft.voter_ids
        healthy = len(voters & raft.ready_ids)
        available = ("True", "QuorumHealthy", f"{healthy} of {len(voters)} voters ready")

    reason, message = describe(action)
    progressing = (
        ("False", reason, message) if isinstance(action, Done) else ("True", reason, message)
    )

    unready = sorted(k for k, m in book.members.items() if m not in raft.ready_ids)
    record = observed.restart
    if not bootstrapping and problem is not None:
        degraded = ("True", "QuorumLost", problem)
    elif record is not None and record.failed is not None:
        degraded = ("True", "RolloutStopped", record.failed)
    elif unready and not bootstrapping:
        degraded = ("True", "MembersNotReady", f"ordinals {unready} are not ready")
    else:
        degraded = ("False", "AllMembersReady", f"{len(book.members)} members ready")

    ready = ready_condition(observed, action, bootstrapping, problem)

    old = {c.get("type"): c for c in previous}
    stamp = format_time(now) if now is not None else None
    out = []
    rows = [
        (AVAILABLE, available),
        (PROGRESSING, progressing),
        (DEGRADED, degraded),
        (READY, ready),
    ]
    if observed.spec.member_revision:
        rows.append((ROLLING, rolling_condition(observed)))
    if observed.spec.restore_from:
        rows.append((RESTORED, restored_condition(observed, not bootstrapping)))
    for kind, (state, why, text) in rows:
        before = old.get(kind) or {}
        # lastTransitionTime moves only when the status flips, as in core conditions.
        since = before.get("lastTransitionTime") if before.get("status") == state else stamp
        cond: JSON = {
            "type": kind,
            "status": state,
            "reason": why,
            "message": text[:32768],
            "observedGeneration": generation,
        }
        if since:
            cond["lastTransitionTime"] = since
        out.append(cond)
    return out


def ready_condition(
    observed: Observed, action: Action, bootstrapping: bool, problem: str | None
) -> tuple[str, str, str]:
    """``Ready``: the cluster is what the spec asks for, and every member serves.

    ``Available`` says the cluster takes writes (a quorum of voters is healthy), which
    is true as soon as the first member leads; what someone running ``kubectl wait``
    after ``kubectl apply`` needs is the state they asked for: ``spec.replicas``
    voters, no learner left to promote, every member ready, and no step left to take.
    """
    raft, spec = observed.raft, observed.spec
    if bootstrapping:
        return ("False", "Bootstrapping", "the first member has not started leading yet")
    if problem is not None:
        return ("False", "QuorumLost", problem)
    voters = raft.voter_ids
    ready_voters = len(voters & raft.ready_ids)
    if len(voters) != spec.desired or raft.learner_ids:
        return (
            "False",
            "Scaling",
            f"{len(voters)} voters and {len(raft.learner_ids)} learners; "
            f"spec.replicas is {spec.desired}",
        )
    if ready_voters != len(voters):
        return ("False", "MembersNotReady", f"{ready_voters} of {len(voters)} voters ready")
    if not isinstance(action, Done):
        reason, message = describe(action)
        return ("False", reason, message)
    return ("True", "AllMembersReady", f"{ready_voters} of {spec.desired} voters ready")


def condition(status: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    for cond in (status or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None
