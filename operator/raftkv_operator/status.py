"""Translation between the RaftKV ``status`` and the planner's records.

Two kinds of fields live in status and are treated differently:

- the operator's memory (:class:`~raftkv_operator.model.Bookkeeping`: clusterID,
  nextMemberID, memberIDs, inFlight) is read back exactly and only ever written with
  a resourceVersion precondition, because the planner trusts it;
- the report (replicas, readyReplicas, leader, term, commitIndex, members,
  conditions, observedGeneration, selector) is derived from the latest observation
  and is safe to overwrite at any time.
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
    DeletePVC,
    Done,
    GrowStatefulSet,
    Observed,
    PromoteLearner,
    RemoveMember,
    ReplaceMember,
    SetQuorumLost,
    ShrinkStatefulSet,
    TransferLeadership,
    UpdateStatus,
    Wait,
)
from raftkv_operator.planner import quorum_problem

JSON = dict[str, Any]

AVAILABLE, PROGRESSING, DEGRADED, READY = "Available", "Progressing", "Degraded", "Ready"

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
    if raft.leader_id is not None:
        out["leaderID"] = raft.leader_id
        out["leader"] = names.get(raft.leader_id, str(raft.leader_id))
    else:
        out["leaderID"] = None
        out["leader"] = None
    return out


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
    if not bootstrapping and problem is not None:
        degraded = ("True", "QuorumLost", problem)
    elif unready and not bootstrapping:
        degraded = ("True", "MembersNotReady", f"ordinals {unready} are not ready")
    else:
        degraded = ("False", "AllMembersReady", f"{len(book.members)} members ready")

    ready = ready_condition(observed, action, bootstrapping, problem)

    old = {c.get("type"): c for c in previous}
    stamp = format_time(now) if now is not None else None
    out = []
    for kind, (state, why, text) in (
        (AVAILABLE, available),
        (PROGRESSING, progressing),
        (DEGRADED, degraded),
        (READY, ready),
    ):
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
