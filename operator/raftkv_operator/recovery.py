"""Quorum-loss recovery, only when asked: the planner's rules for ``force-new-cluster``.

With a majority of voters gone for good nothing can commit, and the planner stops
(``QuorumLost``). The way out is etcd's ``--force-new-cluster``: one survivor rewrites
its configuration to itself alone, keeping its data (``docs/backup.md``). Because that
gives up on the lost members' writes that the survivor does not hold, the operator
never does it on its own: the user asks with the annotation
``raftkv.dev/force-new-cluster: "<ordinal>"`` or ``"auto"`` (the reachable voter with
the highest (term, last index, applied index)).

The rules (pure functions, called by :func:`raftkv_operator.planner.plan`)
--------------------------------------------------------------------------
- :func:`review` decides what the annotation means for the action the planner chose.
  It starts a recovery only where the planner would report ``QuorumLost``, and only
  once quorum has been lost for ``recovery_quorum_loss_seconds`` (an election is not a
  lost majority). Anywhere else the annotation is *refused*: a Warning Event, the
  condition reason, the annotation left in place, nothing touched. A value that is not
  an ordinal or ``auto``, an ordinal that is no member, or a member that is
  unreachable, holds no data or is no voter is refused the same way.
- Write-ahead: ``status.recovery`` (:class:`Recovery`) names the chosen member before
  anything is touched, and clears any membership change or restart begun under the
  old configuration. Every later step is derived from it and from what is observed,
  so a restarted operator resumes where it was, and never forces a second member.
- Forcing (:func:`active_step`): the annotation is removed (once), the pod template
  names the chosen pod in ``RAFTKV_FORCE_NEW_CLUSTER_POD`` and the start command adds
  ``--force-new-cluster`` on the pod whose name matches (``objects.pod_template``), the
  chosen pod is deleted (by uid) and recreated with the flag. The member revision label
  is computed without that difference, so no rolling change follows. Recovered = the
  chosen member leads a configuration of itself alone.
- Growing back (:func:`retire_step`): the template loses the variable; then, one
  ordinal at a time in order, a member whose id is no longer in the configuration
  has its volume and its pod deleted (uids recorded first in ``recovery.retiring``),
  comes back on an empty data dir and is replaced through the planner's ordinary
  REPLACE path (new id, learner, caught up and stable, promoted) before the next one
  is touched. Their data belongs to the old configuration: reusing it could bring an
  old majority back.
- Complete: every mapped member is a ready voter again; the record stays as history
  and a later annotation may ask for a new recovery.
"""

from __future__ import annotations

from dataclasses import replace

from raftkv_operator.model import (
    Action,
    ChangeKind,
    DeletePod,
    DeletePVC,
    Done,
    Observed,
    PlannerConfig,
    PodView,
    Reason,
    SetQuorumLost,
    Wait,
)
from raftkv_operator.recovery_model import (
    ANNOTATION,
    AUTO,
    ClearForceAnnotation,
    Recovery,
    RecoveryPhase,
    RecoveryReason,
    RefuseRecovery,
    Retiring,
    SetForcePod,
    UpdateRecovery,
)

__all__ = ["active_step", "choose", "retire_step", "review"]


# --------------------------------------------------------------------------- the annotation


def review(
    observed: Observed, action: Action, problem: str | None, config: PlannerConfig
) -> Action:
    """What the annotation changes about ``action``, the planner's choice without it."""
    value = observed.force_annotation
    if value is None:
        return action
    record = observed.recovery
    idle = isinstance(action, Done | Wait | SetQuorumLost)
    if record is not None and record.active:
        if not record.annotation_removed or not idle:
            return action  # our own request, still being removed; or work to do first
        return RefuseRecovery(
            RecoveryReason.REFUSED,
            f"{ANNOTATION}={value!r} refused: a recovery is already in progress "
            f"(member {record.member_id}, ordinal {record.ordinal}, phase "
            f"{record.phase.value}); nothing was changed, remove the annotation",
            idle=isinstance(action, Done),
        )
    if isinstance(action, SetQuorumLost) and problem is not None:
        return _start(observed, value, problem, config)
    if not idle:
        return action  # the annotation waits for the step in progress
    if problem is None:
        why = "quorum is healthy"
    else:
        detail = action.message if isinstance(action, Wait) else problem
        why = f"the operator waits for something else first ({detail})"
    return RefuseRecovery(
        RecoveryReason.REFUSED,
        f"{ANNOTATION}={value!r} refused: {why}; it is acted on only while quorum is "
        "lost. Nothing was changed; remove the annotation",
        idle=isinstance(action, Done),
    )


def _start(observed: Observed, value: str, problem: str, config: PlannerConfig) -> Action:
    change = observed.status.in_flight
    if change is not None and change.kind is ChangeKind.BOOTSTRAP:
        return RefuseRecovery(
            RecoveryReason.REFUSED,
            f"{ANNOTATION}={value!r} refused: the first member is still bootstrapping",
        )
    since = observed.quorum_lost_since
    if since is None or observed.now - since < config.recovery_quorum_loss_seconds:
        return RefuseRecovery(
            RecoveryReason.WAITING,
            f"quorum lost ({problem}); {ANNOTATION}={value!r} is acted on once it has "
            f"been lost for {config.recovery_quorum_loss_seconds:g}s",
            event=False,
        )
    chosen = choose(observed, value)
    if isinstance(chosen, str):
        return RefuseRecovery(
            RecoveryReason.INVALID, f"{ANNOTATION}={value!r} refused: {chosen}; nothing changed"
        )
    record = Recovery(
        ordinal=chosen.ordinal,
        member_id=chosen.member_id or 0,
        term=chosen.term,
        last_index=chosen.last_index,
        applied_index=chosen.applied_index,
        requested=value,
        started_at=observed.now,
    )
    return UpdateRecovery(
        record,
        RecoveryReason.STARTED,
        f"quorum lost ({problem}): forcing a new cluster from member {record.member_id} "
        f"(pod {observed.spec.member_name(record.ordinal)}, term {record.term}, last index "
        f"{record.last_index}, applied {record.applied_index}), as {ANNOTATION}={value!r} "
        "asks; writes that only the lost members hold are given up",
        clear_changes=True,
        warning=True,
    )


def choose(observed: Observed, value: str) -> PodView | str:
    """The pod to force for the annotation ``value``, or why there is none."""
    members = observed.status.members
    text = value.strip()
    if text == AUTO:
        candidates = [p for p in observed.pods if _eligible(observed, p) is None]
        if not candidates:
            return "no reachable voter holds data to recover from"
        return max(candidates, key=lambda p: (p.term, p.last_index, p.applied_index, -p.ordinal))
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return f"the value is neither {AUTO!r} nor an ordinal"
    ordinal = int(text)
    if ordinal not in members:
        return f"ordinal {ordinal} is not a member (ordinals {sorted(members)})"
    pod = observed.pod(ordinal)
    if pod is None:
        return f"pod {observed.spec.member_name(ordinal)} does not exist"
    problem = _eligible(observed, pod)
    if problem is not None:
        return problem
    return pod


def _eligible(observed: Observed, pod: PodView) -> str | None:
    """Why the member on ``pod`` cannot become the new cluster (None: it can)."""
    name = observed.spec.member_name(pod.ordinal)
    expected = observed.status.members.get(pod.ordinal)
    if expected is None:
        return f"pod {name} is not a mapped member"
    if pod.terminating:
        return f"pod {name} is terminating"
    if not pod.member_reachable:
        return f"the member on pod {name} does not answer"
    if pod.member_id is None:
        return f"the member on pod {name} has no data (empty data dir)"
    if pod.member_id != expected:
        return f"pod {name} runs member {pod.member_id}, expected {expected}"
    if not pod.voter:
        return f"member {pod.member_id} on pod {name} is not a voter (it may lack writes)"
    return None


# --------------------------------------------------------------------------- a recovery in progress


def active_step(observed: Observed, problem: str | None) -> Action | None:
    """The next step of a recovery that is forcing (it then always has one), or the
    tidy-ups of one growing back; None lets the ordinary planner go on. ``problem`` is
    why quorum is lost (None: it is not)."""
    record = observed.recovery
    if record is None:
        return None
    sts = observed.statefulset
    if record.phase is not RecoveryPhase.FORCING and sts is not None and sts.force_pod:
        # Forced (or given up): no pod may be started with the flag any more.
        return SetForcePod(None, observed.spec.member_revision)
    if not record.active:
        return None
    if not record.annotation_removed:
        if observed.force_annotation is not None:
            return ClearForceAnnotation(
                f"removed {ANNOTATION}: the request is recorded in status.recovery"
            )
        return UpdateRecovery(
            replace(record, annotation_removed=True),
            RecoveryReason.ANNOTATION_REMOVED,
            f"{ANNOTATION} removed; recovery from member {record.member_id} goes on",
        )
    if record.phase is RecoveryPhase.FORCING:
        return _forcing(observed, record, problem)
    if _complete(observed):
        return UpdateRecovery(
            replace(record, phase=RecoveryPhase.COMPLETE, completed_at=observed.now, retiring=None),
            RecoveryReason.COMPLETE,
            f"recovery from member {record.member_id} complete: "
            f"{len(observed.status.members)} voters",
        )
    return None


def _forcing(observed: Observed, record: Recovery, problem: str | None) -> Action:
    spec, raft = observed.spec, observed.raft
    pod_name = spec.member_name(record.ordinal)
    alone = raft.reachable and raft.member_ids == {record.member_id}
    if alone and raft.leader_id == record.member_id:
        return UpdateRecovery(
            replace(record, phase=RecoveryPhase.GROWING_BACK, forced_at=observed.now),
            RecoveryReason.FORCED,
            f"member {record.member_id} (pod {pod_name}) leads a cluster of itself "
            "alone; the other members come back one at a time with empty data",
            warning=True,
        )
    if not record.armed:
        if problem is None:
            # Quorum came back (the lost members returned) before the template could
            # force anyone: forcing now would drop writes the old majority takes.
            return UpdateRecovery(
                replace(record, phase=RecoveryPhase.ABORTED, completed_at=observed.now),
                RecoveryReason.ABORTED,
                f"quorum is back before member {record.member_id} was forced: recovery "
                "given up, nothing was forced",
                warning=True,
            )
        # Write-ahead, before the template can start anyone with the flag: from here
        # on something may have been forced, so the recovery can no longer be given up.
        return UpdateRecovery(
            replace(record, armed=True),
            RecoveryReason.ARMED,
            f"pod {pod_name} is the one to start with --force-new-cluster",
        )
    sts = observed.statefulset
    if sts is not None and sts.force_pod != pod_name:
        return SetForcePod(pod_name, spec.member_revision)
    pod = observed.pod(record.ordinal)
    if pod is None or pod.terminating:
        return Wait(
            Reason.FORCING_NEW_CLUSTER,
            f"waiting for pod {pod_name} to be recreated with --force-new-cluster",
        )
    if not pod.force_new_cluster:
        return DeletePod(
            record.ordinal,
            pod.uid,
            record.member_id,
            why="it is recreated with --force-new-cluster (quorum-loss recovery)",
        )
    return Wait(
        Reason.FORCING_NEW_CLUSTER,
        f"waiting for member {record.member_id} (pod {pod_name}) to lead alone",
    )


def _complete(observed: Observed) -> bool:
    raft = observed.raft
    if observed.status.in_flight is not None or not raft.reachable:
        return False
    ids = set(observed.status.members.values())
    return ids <= raft.voter_ids and ids <= raft.ready_ids and raft.member_ids == ids


def retire_step(observed: Observed) -> Action | None:
    """While growing back: the next stale member's volume and pod go, one ordinal at a
    time (None when there is none, or when the ordinary planner replaces it now)."""
    record = observed.recovery
    if record is None or record.phase is not RecoveryPhase.GROWING_BACK:
        return None
    members, raft = observed.status.members, observed.raft
    retiring = record.retiring
    if (
        retiring is not None
        and members.get(retiring.ordinal) == retiring.member_id
        and raft.member(retiring.member_id) is None
    ):
        return _retire(observed, retiring)  # None once the ordinary REPLACE can start
    unhealthy = _unhealthy(observed)
    if unhealthy is not None:
        return unhealthy
    for k, member_id in sorted(members.items()):
        if k == record.ordinal or raft.member(member_id) is not None:
            continue
        pod, pvc = observed.pod(k), observed.pvc(k)
        if pod is not None and pod.waiting_to_join:
            return None  # already empty: the ordinary REPLACE takes it from here
        retiring = Retiring(
            ordinal=k,
            member_id=member_id,
            pod_uid=pod.uid if pod is not None else "",
            pvc_uid=pvc.uid if pvc is not None else "",
        )
        return UpdateRecovery(
            replace(record, retiring=retiring),
            RecoveryReason.RETIRING,
            f"member {member_id} (pod {observed.spec.member_name(k)}) holds data of the "
            "old configuration: deleting its volume and pod so it comes back empty",
        )
    return None


def _unhealthy(observed: Observed) -> Wait | None:
    """Every member already in the configuration is healthy before the next stale one
    is touched: one member on its way back at a time, each caught up first."""
    raft = observed.raft
    for k, member_id in sorted(observed.status.members.items()):
        if raft.member(member_id) is None:
            continue
        pod = observed.pod(k)
        if pod is None or not pod.ready or pod.terminating or member_id not in raft.ready_ids:
            return Wait(Reason.POD_NOT_READY, f"member {member_id} (pod {k}) is not ready")
    return None


def _retire(observed: Observed, retiring: Retiring) -> Action | None:
    k = retiring.ordinal
    pod, pvc = observed.pod(k), observed.pvc(k)
    if pod is not None and pod.uid != retiring.pod_uid and pod.waiting_to_join:
        return None  # back, empty: the ordinary REPLACE gives it a new id
    old_pvc = pvc is not None and bool(retiring.pvc_uid) and pvc.uid == retiring.pvc_uid
    old_pod = pod is not None and bool(retiring.pod_uid) and pod.uid == retiring.pod_uid
    # The volume first: it stays (Terminating) while the pod uses it, so the pod can
    # never be recreated on it; then the pod, by uid.
    if old_pvc and pvc is not None and not pvc.terminating:
        return _unhealthy(observed) or DeletePVC(k)
    if old_pod and pod is not None and not pod.terminating:
        return DeletePod(
            k,
            pod.uid,
            retiring.member_id,
            why="its data belongs to the configuration before the recovery; it comes back empty",
        )
    name = observed.spec.member_name(k)
    if old_pod or old_pvc:
        return Wait(Reason.RETIRING_STALE_MEMBER, f"waiting for the old pod and volume of {name}")
    return Wait(
        Reason.RETIRING_STALE_MEMBER, f"waiting for {name} to come back with an empty data dir"
    )
