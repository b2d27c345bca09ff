"""Rolling changes: the planner's rules for restarting members onto a new pod template.

A change to anything that reaches the pods (image, resources, Raft tuning, placement,
and later TLS) changes the *member revision* (``objects.member_revision``). The
StatefulSet uses ``updateStrategy: OnDelete``, so nothing happens to running pods
until the operator deletes one; the StatefulSet controller then recreates it from the
current template. These functions decide, from the observation alone, when that may
happen. They are pure and are called by :func:`raftkv_operator.planner.plan`.

The rules
---------
- The template first (:func:`statefulset_step`): a pod recreated for any reason must
  come back at the desired revision, so the StatefulSet's template is brought up to
  date before any pod is touched. That write touches no pod.
- One member at a time, and only from a healthy cluster (:func:`next_restart`): every
  member Ready, caught up (within ``max_learner_lag`` of the leader's commit index), no
  membership change in flight or pending, ``spec.replicas`` members. Followers go
  first, highest ordinal first (as the StatefulSet controller would), the leader last,
  after leadership moved to the most up-to-date member that already runs the new
  revision.
- Write-ahead: the :class:`~raftkv_operator.model.Restart` record is persisted before
  the pod is deleted (:func:`continue_restart`), so a restarted operator knows which
  member is down on purpose and since when, and touches no other pod until it is back
  (Ready, caught up, at the new revision) and has stayed so for
  ``spec.upgrade.stabilizationSeconds``. If the cluster stopped being healthy between
  the record and the deletion, the record is dropped (nothing was touched yet).
- A member that is not back ``spec.upgrade.timeoutSeconds`` after the record stops
  the roll: the record keeps ``failed``, the RaftKV is ``Degraded`` (reason
  ``RolloutStopped``), an Event says why, and no other pod is touched.
- A spec that asks for another revision (a fix, or a revert) supersedes the record
  (:func:`_supersede`). The member that did not come back is then the one member
  that is down, at a revision that is no longer asked for: it is recreated at once,
  under a new record, although it is unhealthy, because deleting a pod whose member is
  already down takes nothing away, provided every *other* member is healthy.
  :func:`restart_down_member` does the same without a record (one was cleared, or the
  member was down before the spec changed), for a member that does not answer at all.
  Both run before the planner's quorum check: that is what lets a one-member cluster
  rolled onto a broken image be reverted. A member that runs but lags is never
  restarted out of turn; that would only set it back.
- A restarted member that comes back on an empty data dir (its volume was lost) drops
  the record: it is replaced like any member that lost its data (``planner.py``).
- While ordinal 0 bootstraps, its pod at a stale revision whose container does not run
  is simply deleted (:func:`bootstrap_pod_step`): there is nothing to protect yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from raftkv_operator.model import (
    Action,
    DeletePod,
    Observed,
    PlannerConfig,
    PodView,
    Reason,
    Restart,
    TransferLeadership,
    UpdateRestart,
    UpdateStatefulSet,
    Wait,
)

__all__ = [
    "bootstrap_pod_step",
    "continue_restart",
    "member_healthy",
    "next_restart",
    "restart_down_member",
    "stale_members",
    "statefulset_step",
    "updated_members",
]


def statefulset_step(observed: Observed) -> Action | None:
    """The template at the desired revision, and ``OnDelete`` (also for a StatefulSet
    made by an operator that predates rolling changes: both go in one write, so the
    controller never starts a rolling update of its own)."""
    revision = observed.spec.member_revision
    sts = observed.statefulset
    if not revision or sts is None:
        return None
    if sts.revision != revision or not sts.on_delete:
        return UpdateStatefulSet(revision)
    return None


def bootstrap_pod_step(observed: Observed, member_id: int) -> Action | None:
    """While ordinal 0 bootstraps: its pod, made from a template the spec no longer
    renders, whose member never started (an image that cannot be pulled), is deleted so
    it comes back at the desired revision. No member exists yet, so there is nothing to
    protect and no record to keep."""
    revision = observed.spec.member_revision
    pod = observed.pod(0)
    if not revision or pod is None or not not_running(pod) or pod.revision == revision:
        return None
    return DeletePod(0, pod.uid, member_id)


def member_healthy(observed: Observed, ordinal: int, member_id: int, config: PlannerConfig) -> bool:
    """Pod Ready and live, the member in it answering as itself, ready by its own
    ``/readyz``, and within ``max_learner_lag`` of the leader's commit index."""
    raft = observed.raft
    pod = observed.pod(ordinal)
    if pod is None or not pod.ready or pod.terminating or not pod.member_reachable:
        return False
    if pod.member_id != member_id or member_id not in raft.ready_ids:
        return False
    match = raft.match_index.get(member_id)
    return match is not None and match >= raft.commit_index - config.max_learner_lag


def not_running(pod: PodView) -> bool:
    """The kubelet says the member container does not run (ImagePullBackOff,
    CrashLoopBackOff...) and the member does not answer. (Not answering alone is not
    enough: that may be the operator's network, with the member running fine.)

    Only the bootstrap uses this to delete a pod regardless of anything else (there is
    one member, not confirmed yet). Elsewhere the kubelet's word is not trusted that
    far: its status can lag a container that has just started, so a second pod is
    never deleted while another member is unhealthy, whatever the kubelet says."""
    return not pod.member_reachable and pod.waiting_reason is not None and not pod.terminating


def stale_members(observed: Observed) -> list[tuple[int, int]]:
    """(ordinal, member id) of mapped members whose pod exists at another revision."""
    revision = observed.spec.member_revision
    out = []
    for k, member_id in sorted(observed.status.members.items()):
        pod = observed.pod(k)
        if pod is not None and pod.revision != revision:
            out.append((k, member_id))
    return out


def updated_members(observed: Observed) -> list[tuple[int, int]]:
    """(ordinal, member id) of mapped members whose pod runs the desired revision."""
    revision = observed.spec.member_revision
    return [
        (k, m)
        for k, m in sorted(observed.status.members.items())
        if (pod := observed.pod(k)) is not None and pod.revision == revision
    ]


def _restart_blocker(
    observed: Observed, ordinal: int, member_id: int, config: PlannerConfig
) -> str | None:
    """Why deleting the pod of ``member_id`` now could take down a second member, or
    the leader, or overlap a membership change; None when it may go."""
    status, raft = observed.status, observed.raft
    if status.in_flight is not None:
        return f"a membership change ({status.in_flight.kind.value}) is in flight"
    if raft.config_change_pending:
        return "a configuration change is not applied yet"
    for k, other in sorted(status.members.items()):
        if other != member_id and not member_healthy(observed, k, other, config):
            return f"member {other} (pod {k}) is not healthy"
    mapped = set(status.members.values())
    for voter in sorted(raft.voter_ids - mapped):
        if voter not in raft.ready_ids:
            return f"voter {voter} is not healthy"
    if raft.leader_id == member_id and len(raft.voter_ids - {member_id}) > 0:
        return f"member {member_id} leads"
    return None


def _start(observed: Observed, ordinal: int, member_id: int, message: str) -> UpdateRestart:
    record = Restart(ordinal, member_id, observed.spec.member_revision, observed.now)
    return UpdateRestart(record, Reason.RESTARTING_MEMBER, message)


def _progress(observed: Observed) -> str:
    return f"{len(updated_members(observed))}/{len(observed.status.members)} updated"


def continue_restart(observed: Observed, config: PlannerConfig) -> Action | None:
    """The next step of the restart in progress; None when there is none. Never None
    while a record exists, so nothing else starts until it is finished or dropped."""
    record = observed.restart
    if record is None:
        return None
    k, member_id = record.ordinal, record.member_id
    revision = observed.spec.member_revision
    if observed.status.members.get(k) != member_id:
        return UpdateRestart(
            None, Reason.RESTART_ABANDONED, f"ordinal {k} no longer maps to member {member_id}"
        )
    if record.revision != revision:
        return _supersede(observed, record, config)
    pod = observed.pod(k)
    if pod is not None and pod.waiting_to_join:
        # Back on an empty data dir (its volume was lost): it can never come back as
        # itself. Replacing it is a membership change (planner.py), which waits for no
        # restart record.
        return UpdateRestart(
            None,
            Reason.RESTART_ABANDONED,
            f"pod {k} runs on an empty data dir; member {member_id} is replaced instead",
        )
    if record.failed is not None:
        # Stopped stays stopped for this revision: no pod is touched, nothing resumes
        # on its own (a member that flaps back for a while is no reason to go on).
        return Wait(Reason.ROLLOUT_STOPPED, record.failed)

    if pod is not None and not pod.terminating and pod.revision != record.revision:
        # The record is written before the deletion: this pod was not deleted yet.
        blocker = _restart_blocker(observed, k, member_id, config)
        if blocker is not None:
            return UpdateRestart(
                None,
                Reason.RESTART_ABANDONED,
                f"not restarting member {member_id} (pod {k}) now: {blocker}",
            )
        return DeletePod(k, pod.uid, member_id)

    now = observed.now
    back = (
        pod is not None
        and pod.revision == record.revision
        and member_healthy(observed, k, member_id, config)
    )
    if back:
        since = record.ready_since
        if since is None or since > now:  # a clock that went back restarts the period
            return UpdateRestart(
                replace(record, ready_since=now),
                Reason.MEMBER_BACK,
                f"member {member_id} (pod {k}) is back at revision {record.revision}",
            )
        remaining = since + observed.spec.upgrade_stabilization_seconds - now
        if remaining > 0:
            return Wait(
                Reason.MEMBER_STABILIZING,
                f"member {member_id} (pod {k}) stable for {remaining:.1f}s more",
            )
        rest = [m for _, m in stale_members(observed) if m != member_id]
        reason = Reason.MEMBER_UPDATED if rest else Reason.ROLLOUT_COMPLETE
        done = len(observed.status.members) - len(rest)
        return UpdateRestart(
            None,
            reason,
            f"member {member_id} (pod {k}) runs revision {record.revision} "
            f"({done}/{len(observed.status.members)} updated)",
        )
    if record.ready_since is not None:
        return UpdateRestart(
            replace(record, ready_since=None),
            Reason.MEMBER_FELL_BACK,
            f"member {member_id} (pod {k}) is not ready any more; stabilization restarts",
        )
    elapsed = now - record.started_at
    timeout = observed.spec.upgrade_timeout_seconds
    if elapsed > timeout:
        why = (
            f"member {member_id} (pod {k}) is not back at revision {record.revision} "
            f"{timeout:.0f}s after its restart ({_pod_problem(observed, k, record.revision)}); "
            f"no other member is touched until the spec changes"
        )
        return UpdateRestart(replace(record, failed=why), Reason.ROLLOUT_STOPPED, why)
    return Wait(
        Reason.MEMBER_RESTARTING,
        f"waiting for member {member_id} (pod {k}) to come back at revision "
        f"{record.revision} ({elapsed:.0f}s of {timeout:.0f}s)",
    )


def _supersede(observed: Observed, record: Restart, config: PlannerConfig) -> UpdateRestart:
    """The spec asks for another revision than the restart in progress (a revert, or
    a fix after the roll stopped). A member that is not back yet, with its pod at the
    wrong revision, is the one member that is down: it is recreated at the new one
    straight away, under a new record (this is how a member that never came back gets
    replaced although it is unhealthy). Otherwise the record simply goes."""
    revision = observed.spec.member_revision
    k, member_id = record.ordinal, record.member_id
    why = f"the spec now renders revision {revision or '(none)'}"
    pod = observed.pod(k)
    if (
        revision
        and pod is not None
        and not pod.terminating
        and pod.revision != revision
        and not member_healthy(observed, k, member_id, config)
        and _restart_blocker(observed, k, member_id, config) is None
    ):
        return UpdateRestart(
            Restart(k, member_id, revision, observed.now),
            Reason.ROLLOUT_SUPERSEDED,
            f"{why}; member {member_id} (pod {k}) is not back at {record.revision}: "
            f"recreating it at {revision}",
        )
    return UpdateRestart(
        None,
        Reason.ROLLOUT_SUPERSEDED,
        f"{why}; member {member_id} was restarting for {record.revision}",
    )


def _pod_problem(observed: Observed, k: int, revision: str) -> str:
    """What the observation says about a member that is not back, for people."""
    pod = observed.pod(k)
    if pod is None:
        return "the pod does not exist"
    if pod.terminating:
        return "the pod is still terminating"
    if pod.revision != revision:
        return f"the pod runs revision {pod.revision}"
    if pod.waiting_reason:
        return f"container waiting: {pod.waiting_reason}"
    if not pod.member_reachable:
        return f"pod {pod.phase.value}, member not answering"
    if not pod.ready:
        return "pod not Ready"
    return "member not caught up"


def restart_down_member(observed: Observed, config: PlannerConfig) -> Action | None:
    """The one member whose process does not run (its pod is there but the member
    does not answer: an image that cannot be pulled, a crash loop), at a revision the
    spec no longer asks for, is recreated at the desired one although it is unhealthy:
    deleting that pod takes nothing away. Every other member must be healthy (so this
    never acts in a cluster with two problems) and no membership change under way. A
    member that runs but lags is left alone: restarting it would only set it back.

    :func:`_supersede` covers the usual case (the record of the roll that stopped is
    still there); this covers a record that is gone (cleared by hand, or the operator's
    status lost) and a member that was already down before the spec changed."""
    revision = observed.spec.member_revision
    if not revision or observed.restart is not None or observed.status.in_flight is not None:
        return None
    down = []
    for k, member_id in stale_members(observed):
        pod = observed.pod(k)
        assert pod is not None
        if not pod.terminating and not pod.member_reachable:
            down.append((k, member_id, pod))
    if len(down) != 1:
        return None
    k, member_id, pod = down[0]
    if _restart_blocker(observed, k, member_id, config) is not None:
        return None
    return _start_down(observed, k, member_id, pod)


def _start_down(observed: Observed, k: int, member_id: int, pod: PodView) -> UpdateRestart:
    why = f", {pod.waiting_reason}" if pod.waiting_reason else ""
    return _start(
        observed,
        k,
        member_id,
        f"member {member_id} (pod {k}) is down at revision {pod.revision}{why}; recreating "
        f"it at {observed.spec.member_revision} ({_progress(observed)})",
    )


def next_restart(observed: Observed, config: PlannerConfig) -> Action | None:
    """Start restarting the next member onto the desired revision, or move leadership
    off the leader when it is the last one left. None when every member is there."""
    revision = observed.spec.member_revision
    status, raft = observed.status, observed.raft
    if not revision or observed.restart is not None or status.in_flight is not None:
        return None
    stale = stale_members(observed)
    if not stale:
        return None
    if len(status.members) != observed.spec.desired:
        return None  # scaling first; new members start at the desired revision anyway
    for k, member_id in sorted(status.members.items()):
        if not member_healthy(observed, k, member_id, config):
            return Wait(
                Reason.POD_NOT_READY,
                f"member {member_id} (pod {k}) is not healthy; the roll waits",
            )
    followers = [(k, m) for k, m in stale if m != raft.leader_id]
    if followers:
        k, member_id = max(followers)  # highest ordinal first, as the controller would
    else:
        k, member_id = stale[0]
        others = raft.voter_ids - {member_id}
        if raft.leader_id == member_id and others:
            candidates = frozenset(m for _, m in updated_members(observed)) & others
            target = _most_up_to_date(observed, candidates & raft.ready_ids)
            if target is None:
                return Wait(Reason.NO_TRANSFER_TARGET, "no updated healthy voter to lead")
            return TransferLeadership(member_id, target)
    blocker = _restart_blocker(observed, k, member_id, config)
    if blocker is not None:
        return Wait(Reason.POD_NOT_READY, f"not restarting member {member_id}: {blocker}")
    return _start(
        observed,
        k,
        member_id,
        f"restarting member {member_id} (pod {k}) at revision {revision} ({_progress(observed)})",
    )


def _most_up_to_date(observed: Observed, candidates: Iterable[int]) -> int | None:
    """Highest match index, lowest id on ties (deterministic)."""
    pool = sorted(candidates)
    if not pool:
        return None
    match = observed.raft.match_index
    return min(pool, key=lambda i: (-match.get(i, 0), i))
