"""The operator's brain: observed state in, the one next action out.

``plan`` is a pure function (no I/O, no clock, no randomness): the kopf handler
gathers an :class:`~raftkv_operator.model.Observed`, calls ``plan``, carries out the
returned action and requeues. Because the function only looks at the present state,
re-running it after a crash, twice in a row or on a slightly stale view is safe: every
step it can return is idempotent or guarded by a precondition it re-checks.

How a membership change stays single and crash-safe
----------------------------------------------------
Every change starts with a status write that records it (``Bookkeeping.in_flight``)
and, for an addition, allocates the member id from the ever-growing counter. Only
then do Raft and Kubernetes steps follow, each derived from what is observed:

- ADD(k, N):     AddLearner(N) → GrowStatefulSet(k+1) → caught up → stable → Promote(N)
- REMOVE(k, N):  TransferLeadership (if N leads) → RemoveMember(N) → applied →
                 ShrinkStatefulSet(k) → pod gone → DeletePVC(k) → unmap k
- REPLACE(k, X→N): RemoveMember(X) → applied → then exactly like ADD(k, N)
- BOOTSTRAP(0, N): CreateChildren(1) → ordinal 0 leads a one-member cluster

and ends with a status write clearing the record. A killed operator finds the record
and resumes at the first step whose effect is not yet observed (an AddLearner already
applied shows up in the member list, so the next step is the StatefulSet, not a second
AddLearner). An id leaves the map only after its member, pod and PVC are gone, and
the counter never goes back, so no id is ever reused.

Rolling changes (a new pod template: image, resources, Raft tuning...) follow the same
pattern with their own write-ahead record, one member restart at a time; the rules are
in ``rolling.py``. A restart never overlaps a membership change: neither starts while
the other's record exists.

Quorum-loss recovery (``raftkv.dev/force-new-cluster``) has its own write-ahead record,
``status.recovery``, and its rules in ``recovery.py``: it starts only where this planner
would stop at QuorumLost, forces exactly the member its record names, then lets the
ordinary REPLACE path bring the others back, one at a time, on empty volumes.
"""

from __future__ import annotations

from dataclasses import replace

from raftkv_operator import recovery, restore, rolling
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
    PlannerConfig,
    PromoteLearner,
    RaftView,
    Reason,
    RemoveMember,
    ReplaceMember,
    SetQuorumLost,
    ShrinkStatefulSet,
    TransferLeadership,
    UpdateStatus,
    Wait,
)

DEFAULT_CONFIG = PlannerConfig()

__all__ = ["DEFAULT_CONFIG", "majority", "plan", "quorum_problem"]


def majority(voters: int) -> int:
    """Votes needed to commit with ``voters`` voting members (§5.2/§5.3 of the Raft paper)."""
    return voters // 2 + 1


def plan(observed: Observed, config: PlannerConfig = DEFAULT_CONFIG) -> Action:
    """Return the one next action for ``observed``; the same input always gives the same output."""
    action = _plan(observed, config)
    # A quorum-loss recovery starts only where the planner would stop at QuorumLost;
    # anywhere else the annotation is refused (recovery.py).
    return recovery.review(observed, action, quorum_problem(observed.raft), config)


def _plan(observed: Observed, config: PlannerConfig) -> Action:
    status = observed.status

    # Bootstrap exactly once. The cluster id is persisted *before* any pod exists,
    # so a StatefulSet or a reachable member without it means our status was lost:
    # bootstrapping again would create a second, divergent cluster.
    if status.cluster_id is None:
        if observed.statefulset is not None or observed.raft.reachable:
            return Wait(
                Reason.STATUS_LOST,
                "members exist but status has no cluster id; refusing to bootstrap again",
            )
        member_id = status.next_member_id
        return UpdateStatus(
            Bookkeeping(
                cluster_id=observed.spec.uid,
                members={0: member_id},
                next_member_id=member_id + 1,
                in_flight=Change(ChangeKind.BOOTSTRAP, 0, member_id),
            ),
            Reason.BOOTSTRAPPING,
            f"ordinal 0 bootstraps a one-member cluster as member {member_id}",
        )

    # spec.tls: a pod made without its certificate Secrets would never start, and one
    # made with the wrong ones would not reach its peers: no pod is created or touched
    # until they are there (the members already running keep running).
    if observed.tls_blocker is not None:
        return Wait(Reason.CERTIFICATES_NOT_READY, observed.tls_blocker)

    # Owned objects and the pods that existing members live on come back first:
    # they change no membership, and without them quorum could never return.
    floor = _statefulset_floor(status)
    if not observed.children_exist or observed.statefulset is None:
        return CreateChildren(statefulset_replicas=floor)
    if observed.statefulset.replicas < floor:
        return GrowStatefulSet(floor)
    # A recovery the user asked for goes before everything else, quorum or not: its
    # record names the one member forced, and nothing else is touched until it leads.
    forced = recovery.active_step(observed, quorum_problem(observed.raft))
    if forced is not None:
        return forced
    # The template next (it touches no pod): whatever pod is recreated from now on,
    # for a roll or after a crash, comes back at the desired revision.
    template = rolling.statefulset_step(observed)
    if template is not None:
        return template

    change = status.in_flight
    if change is not None and change.kind is ChangeKind.BOOTSTRAP:
        return _continue_bootstrap(observed, change)

    # A member restart in progress goes on (or is stopped, superseded, dropped) even
    # without quorum: the restart may itself be what took it (a one-member cluster, a
    # member that never came back). It deletes a pod only while every other member is
    # healthy, which implies quorum for two members or more.
    problem = quorum_problem(observed.raft)
    restart = rolling.continue_restart(observed, config) or rolling.restart_down_member(
        observed, config
    )
    if restart is not None:
        if problem is not None and isinstance(restart, Wait):
            return SetQuorumLost(problem)
        return restart

    # Quorum lost: do not guess. No membership change until a leader is back.
    if problem is not None:
        return SetQuorumLost(problem)

    # Every later step either changes the configuration or depends on the last
    # change having been applied.
    if observed.raft.config_change_pending:
        return Wait(Reason.CONFIG_CHANGE_PENDING, "a configuration change is not applied yet")

    if change is not None:
        return _continue_change(observed, change, config)
    return _start_next(observed, config)


def quorum_problem(raft: RaftView) -> str | None:
    """Why the cluster has no working quorum, or None when it has one."""
    if not raft.reachable:
        return "no member answered"
    if raft.leader_id is None:
        return "no leader"
    voters = raft.voter_ids
    healthy = voters & raft.ready_ids
    if len(healthy) < majority(len(voters)):
        return f"{len(healthy)} of {len(voters)} voters healthy, {majority(len(voters))} needed"
    return None


# --------------------------------------------------------------------------- helpers


def _statefulset_floor(status: Bookkeeping) -> int:
    """Pods that must exist: one per mapped ordinal, except the one an ADD has not
    grown into yet or a REMOVE is shrinking away (ordinals are contiguous from 0)."""
    mapped = len(status.members)
    change = status.in_flight
    if change is not None and change.kind in (ChangeKind.ADD, ChangeKind.REMOVE):
        mapped -= 1
    return max(1, mapped)


def _finish(status: Bookkeeping, reason: Reason, message: str) -> UpdateStatus:
    return UpdateStatus(replace(status, in_flight=None), reason, message)


def _with_change(status: Bookkeeping, change: Change, reason: Reason, message: str) -> UpdateStatus:
    return UpdateStatus(replace(status, in_flight=change), reason, message)


def _continue_bootstrap(observed: Observed, change: Change) -> Action:
    raft = observed.raft
    restored = restore.bootstrap_step(observed, change)
    if restored is not None:
        return restored
    if raft.reachable and raft.leader_id == change.member_id:
        return _finish(
            observed.status, Reason.BOOTSTRAPPED, f"member {change.member_id} leads the cluster"
        )
    stale = rolling.bootstrap_pod_step(observed, change.member_id)
    if stale is not None:
        return stale
    failed = restore.failed_wait(observed)
    if failed is not None:
        return failed
    return Wait(Reason.WAITING_FOR_BOOTSTRAP, f"waiting for member {change.member_id} to lead")


def _continue_change(observed: Observed, change: Change, config: PlannerConfig) -> Action:
    if change.kind is ChangeKind.REMOVE:
        return _continue_remove(observed, change)
    # ADD and REPLACE; REPLACE first retires the member whose data was lost.
    if change.old_member_id is not None and observed.raft.member(change.old_member_id):
        return _remove_member(observed, change.old_member_id)
    return _continue_add(observed, change, config)


def _continue_add(observed: Observed, change: Change, config: PlannerConfig) -> Action:
    spec, raft, status = observed.spec, observed.raft, observed.status
    k, member_id = change.ordinal, change.member_id

    if k >= spec.desired and k == max(status.members):
        # spec.replicas dropped mid-way. The id may already be in the configuration,
        # so turn this into the removal of the same id rather than forgetting it.
        # Only for the highest ordinal: a StatefulSet shrinks from the top, so a
        # REPLACE further down finishes first and the scale-down follows.
        return _with_change(
            status,
            Change(ChangeKind.REMOVE, k, member_id),
            Reason.SCALE_UP_ABORTED,
            f"spec.replicas is now {spec.desired}; withdrawing member {member_id}",
        )

    member = raft.member(member_id)
    if member is None:
        return AddLearner(k, member_id, spec.member_name(k), spec.peer_url(k))
    if not member.learner:
        reason = (
            Reason.MEMBER_REPLACED if change.kind is ChangeKind.REPLACE else Reason.MEMBER_ADDED
        )
        return _finish(status, reason, f"member {member_id} is a voter at ordinal {k}")

    statefulset = observed.statefulset
    assert statefulset is not None  # plan() created it before any change could run
    if statefulset.replicas < k + 1:
        return GrowStatefulSet(k + 1)

    since = change.caught_up_since
    if not _learner_caught_up(observed, k, member_id, config):
        if since is not None:
            return _with_change(
                status,
                replace(change, caught_up_since=None),
                Reason.LEARNER_FELL_BEHIND,
                f"member {member_id} fell behind; stabilization restarts",
            )
        return Wait(Reason.LEARNER_CATCHING_UP, f"member {member_id} is catching up")
    if since is None or since > observed.now:  # a clock that went back restarts the period
        return _with_change(
            status,
            replace(change, caught_up_since=observed.now),
            Reason.LEARNER_CAUGHT_UP,
            f"member {member_id} caught up",
        )
    remaining = since + config.stabilization_seconds - observed.now
    if remaining > 0:
        return Wait(
            Reason.LEARNER_STABILIZING, f"member {member_id} stable for {remaining:.1f}s more"
        )
    return PromoteLearner(member_id)


def _learner_caught_up(observed: Observed, k: int, member_id: int, config: PlannerConfig) -> bool:
    raft = observed.raft
    pod = observed.pod(k)
    if pod is None or not pod.ready or pod.terminating or pod.member_id != member_id:
        return False
    if member_id not in raft.ready_ids:
        return False
    match = raft.match_index.get(member_id)
    return match is not None and match >= raft.commit_index - config.max_learner_lag


def _continue_remove(observed: Observed, change: Change) -> Action:
    k, member_id = change.ordinal, change.member_id
    if observed.raft.member(member_id) is not None:
        step = _remove_member(observed, member_id)
        if isinstance(step, Wait) and step.reason is Reason.REMOVAL_WOULD_BREAK_QUORUM:
            # Blocked because another voter lost its data? Replacing that one first is
            # the only way forward; the removal restarts afterwards. Dropping this
            # record is safe: member_id is still in the configuration, so its id stays
            # in use and no removal of it can be outstanding (none is pending).
            lost = _lost_voters(observed)
            if lost:
                return _begin_replace(observed, *lost[0])
        return step

    # Out of the configuration (and applied: plan() waited for pending changes).
    # Only now may its pod go, and only after the pod is gone its PVC, so a later
    # scale-up at this ordinal starts from an empty data dir.
    statefulset = observed.statefulset
    assert statefulset is not None
    if statefulset.replicas > k:
        return ShrinkStatefulSet(k)
    if observed.pod(k) is not None:
        return Wait(Reason.POD_TERMINATING, f"waiting for pod {k} to go away")
    pvc = observed.pvc(k)
    if pvc is not None:
        if pvc.terminating:
            return Wait(Reason.PVC_TERMINATING, f"waiting for the PVC of ordinal {k} to go away")
        return DeletePVC(k)
    members = {o: m for o, m in observed.status.members.items() if o != k}
    return _finish(
        observed.status.with_members(members),
        Reason.MEMBER_REMOVED,
        f"member {member_id} removed from ordinal {k}",
    )


def _remove_member(observed: Observed, member_id: int) -> Action:
    """Remove ``member_id`` if that keeps a healthy quorum, moving leadership away first."""
    raft = observed.raft
    voters = raft.voter_ids
    if member_id in voters:
        others = voters - {member_id}
        healthy_after = others & raft.ready_ids
        # Never below one member, and never a removal that leaves fewer healthy
        # voters than the *new* configuration needs to commit.
        if not others or len(healthy_after) < majority(len(others)):
            return Wait(
                Reason.REMOVAL_WOULD_BREAK_QUORUM,
                f"removing member {member_id} would leave {len(healthy_after)} of "
                f"{len(others)} voters healthy",
            )
        if raft.leader_id == member_id:
            target = _transfer_target(raft, healthy_after)
            if target is None:
                return Wait(Reason.NO_TRANSFER_TARGET, "no healthy voter to lead")
            return TransferLeadership(member_id, target)
    return RemoveMember(member_id)


def _transfer_target(raft: RaftView, candidates: frozenset[int]) -> int | None:
    """The most up-to-date healthy voter (lowest id on ties, for determinism)."""
    if not candidates:
        return None
    return min(candidates, key=lambda i: (-raft.match_index.get(i, 0), i))


def _start_next(observed: Observed, config: PlannerConfig = DEFAULT_CONFIG) -> Action:
    """No change in flight: find the first difference between desired and observed.

    The checks run in priority order; the first that finds something to do decides.
    A rolling change comes last: only a cluster of ``spec.replicas`` healthy members,
    with nothing else to repair, has a member to spare.
    """
    for step in (
        _next_scale_down,
        _next_orphan,
        recovery.retire_step,
        _next_member_repair,
        _next_cleanup,
        _next_wait_for_health,
        _next_scale_up,
    ):
        action = step(observed)
        if action is not None:
            return action
    action = rolling.next_restart(observed, config)
    if action is not None:
        return action
    return Done(Reason.IN_SYNC, f"{len(observed.status.members)} members in sync")


def _next_scale_down(observed: Observed) -> Action | None:
    """Scale down: highest ordinal first."""
    status = observed.status
    mapped = status.members
    n = len(mapped)
    if n <= observed.spec.desired:
        return None
    k = n - 1
    return _with_change(
        status,
        Change(ChangeKind.REMOVE, k, mapped[k]),
        Reason.SCALING_DOWN,
        f"removing member {mapped[k]} at ordinal {k} ({n} → {n - 1})",
    )


def _next_orphan(observed: Observed) -> Action | None:
    """Members nobody mapped. An id at or above our counter can only come from a
    status newer than the one we read: acting on it could re-allocate that id."""
    status = observed.status
    orphans = sorted(observed.raft.member_ids - set(status.members.values()))
    if not orphans:
        return None
    if orphans[-1] >= status.next_member_id:
        return Wait(Reason.STATUS_STALE, f"member {orphans[-1]} is newer than our status")
    return _remove_member(observed, orphans[0])


def _next_member_repair(observed: Observed) -> Action | None:
    """Members whose pod lost its data, or who must be resumed."""
    for k, member_id in sorted(observed.status.members.items()):
        action = _repair_member(observed, k, member_id)
        if action is not None:
            return action
    return None


def _repair_member(observed: Observed, k: int, member_id: int) -> Action | None:
    member = observed.raft.member(member_id)
    pod = observed.pod(k)
    fresh = pod is not None and pod.waiting_to_join
    if member is None:
        if fresh:  # removed behind our back; its pod starts over: replace it
            return _begin_replace(observed, k, member_id)
        return Wait(
            Reason.MEMBER_MISSING_FROM_CONFIG,
            f"member {member_id} (ordinal {k}) is not in the configuration; "
            f"delete pod {k} and its PVC to have it replaced",
        )
    if member.learner:  # a learner whose ADD record is gone: finish adding it
        return _with_change(
            observed.status,
            Change(ChangeKind.ADD, k, member_id),
            Reason.RESUMING_LEARNER,
            f"resuming the addition of learner {member_id}",
        )
    if fresh:  # a voter's pod runs on an empty data dir: the PVC was lost
        return _begin_replace(observed, k, member_id)
    if (
        pod is not None
        and pod.member_reachable
        and pod.member_id is not None
        and pod.member_id != member_id
    ):
        return Wait(
            Reason.UNEXPECTED_MEMBER_IDENTITY,
            f"pod {k} runs as member {pod.member_id}, expected {member_id}",
        )
    return None


def _next_cleanup(observed: Observed) -> Action | None:
    """A StatefulSet larger than the membership shrinks; PVCs of ordinals that are no
    member any more are deleted, so they never come back with stale data."""
    n = len(observed.status.members)
    statefulset = observed.statefulset
    assert statefulset is not None
    if statefulset.replicas > n:
        return ShrinkStatefulSet(n)
    for pvc in sorted(observed.pvcs, key=lambda p: p.ordinal):
        if pvc.ordinal >= n and not pvc.terminating and observed.pod(pvc.ordinal) is None:
            return DeletePVC(pvc.ordinal)
    return None


def _next_wait_for_health(observed: Observed) -> Action | None:
    """Every member back and healthy before membership is touched: a deleted or
    crashed pod is not a scale-in, it returns with its PVC."""
    raft = observed.raft
    for k, member_id in sorted(observed.status.members.items()):
        pod = observed.pod(k)
        if pod is None or not pod.ready or pod.terminating or member_id not in raft.ready_ids:
            return Wait(Reason.POD_NOT_READY, f"member {member_id} (pod {k}) is not ready")
    return None


def _next_scale_up(observed: Observed) -> Action | None:
    """Scale up by one: wait for the leftovers of a previous scale-down to go, then
    allocate the next member id (write-ahead, in status) for the next ordinal."""
    status = observed.status
    mapped = status.members
    n = len(mapped)
    if n >= observed.spec.desired:
        return None
    for pod in observed.pods:
        if pod.ordinal >= n:
            return Wait(Reason.POD_TERMINATING, f"waiting for pod {pod.ordinal} to go away")
    for pvc in observed.pvcs:
        if pvc.ordinal >= n:
            return Wait(Reason.PVC_TERMINATING, f"waiting for PVC {pvc.ordinal} to go away")
    member_id = status.next_member_id
    return UpdateStatus(
        Bookkeeping(
            cluster_id=status.cluster_id,
            members={**mapped, n: member_id},
            next_member_id=member_id + 1,
            in_flight=Change(ChangeKind.ADD, n, member_id),
        ),
        Reason.SCALING_UP,
        f"adding member {member_id} at ordinal {n} ({n} → {n + 1})",
    )


def _lost_voters(observed: Observed) -> list[tuple[int, int]]:
    """(ordinal, member id) of voters whose pod runs on an empty data dir."""
    voters = observed.raft.voter_ids
    lost = []
    for k, member_id in sorted(observed.status.members.items()):
        pod = observed.pod(k)
        if member_id in voters and pod is not None and pod.waiting_to_join:
            lost.append((k, member_id))
    return lost


def _begin_replace(observed: Observed, k: int, old_id: int) -> ReplaceMember:
    status = observed.status
    new_id = status.next_member_id
    return ReplaceMember(
        ordinal=k,
        old_id=old_id,
        new_id=new_id,
        status=Bookkeeping(
            cluster_id=status.cluster_id,
            members={**status.members, k: new_id},
            next_member_id=new_id + 1,
            in_flight=Change(ChangeKind.REPLACE, k, new_id, old_member_id=old_id),
        ),
    )
