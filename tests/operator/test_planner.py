"""The planner's transitions, one table row each, plus property tests on a world model.

Cluster fixtures use member ids 1..n at ordinals 0..n-1 of a RaftKV named ``kv``;
member 1 leads unless a row says otherwise.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_world import CONFIG, NOW, SPEC, UID, Fault, World, cluster, url

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
    PodView,
    PromoteLearner,
    PVCView,
    RaftView,
    Reason,
    RemoveMember,
    ReplaceMember,
    SetQuorumLost,
    ShrinkStatefulSet,
    StatefulSetView,
    TransferLeadership,
    UpdateStatus,
    Wait,
)
from raftkv_operator.planner import plan


def with_pods(o: Observed, *pods: PodView, drop: tuple[int, ...] = ()) -> Observed:
    keep = {p.ordinal: p for p in o.pods if p.ordinal not in drop}
    keep.update({p.ordinal: p for p in pods})
    return replace(o, pods=tuple(keep[k] for k in sorted(keep)))


def without_member(o: Observed, member_id: int) -> Observed:
    raft = o.raft
    return replace(
        o,
        raft=replace(
            raft,
            members=tuple(m for m in raft.members if m.id != member_id),
            ready_ids=raft.ready_ids - {member_id},
        ),
    )


ADD_4 = Change(ChangeKind.ADD, 3, 4)
REMOVE_3 = Change(ChangeKind.REMOVE, 2, 3)
REPLACE_2 = Change(ChangeKind.REPLACE, 1, 4, old_member_id=2)

# ---------------------------------------------------------------- the observed states

EMPTY = Observed(spec=SPEC, status=Bookkeeping(), now=NOW)
BOOTSTRAP = Bookkeeping(UID, {0: 1}, 2, Change(ChangeKind.BOOTSTRAP, 0, 1))
BOOTSTRAP_NO_STS = replace(EMPTY, status=BOOTSTRAP)
BOOTSTRAP_STARTING = replace(
    EMPTY,
    status=BOOTSTRAP,
    children_exist=True,
    statefulset=StatefulSetView(1),
    pods=(PodView(0, ready=False, member_reachable=False),),
    pvcs=(PVCView(0),),
)
BOOTSTRAP_LEADING = replace(cluster(1), status=BOOTSTRAP)

# Scale up 3 → 4 with member 4 at ordinal 3.
ADD_RECORDED = cluster(3, replicas=4, in_flight=ADD_4, next_id=5)
ADD_RECORDED = replace(
    ADD_RECORDED, status=ADD_RECORDED.status.with_members({0: 1, 1: 2, 2: 3, 3: 4})
)
LEARNER_ADDED = cluster(3, replicas=4, learners={3: 4}, in_flight=ADD_4, sts=3)
LEARNER_POD_JOINING = with_pods(
    cluster(3, replicas=4, learners={3: 4}, in_flight=ADD_4, not_ready=frozenset({4})),
    PodView(3, ready=False, member_id=None),
)
_behind = cluster(3, replicas=4, learners={3: 4}, in_flight=ADD_4)
LEARNER_BEHIND = replace(
    _behind,
    raft=replace(_behind.raft, commit_index=1000, match_index={1: 1000, 2: 1000, 3: 1000, 4: 40}),
)
LEARNER_CAUGHT_UP = cluster(3, replicas=4, learners={3: 4}, in_flight=ADD_4)
LEARNER_STABILIZING = cluster(
    3, replicas=4, learners={3: 4}, in_flight=replace(ADD_4, caught_up_since=NOW - 4)
)
LEARNER_STABLE = cluster(
    3, replicas=4, learners={3: 4}, in_flight=replace(ADD_4, caught_up_since=NOW - 10)
)
LEARNER_FELL_BEHIND = replace(
    LEARNER_BEHIND,
    status=replace(LEARNER_BEHIND.status, in_flight=replace(ADD_4, caught_up_since=NOW - 9)),
)
PROMOTED = cluster(4, in_flight=ADD_4)

# Scale down 3 → 2: member 3 at ordinal 2 leaves.
REMOVE_RECORDED = cluster(3, replicas=2, in_flight=REMOVE_3)
LEAVER_LEADS = cluster(3, replicas=2, in_flight=REMOVE_3, leader=3)
_removed = without_member(cluster(3, replicas=2, in_flight=REMOVE_3), 3)
REMOVED_FROM_RAFT = _removed
REMOVAL_NOT_APPLIED = replace(_removed, raft=replace(_removed.raft, config_change_pending=True))
SHRUNK_POD_TERMINATING = replace(
    _removed,
    statefulset=StatefulSetView(2, 2, 3),
    pods=(*_removed.pods[:2], PodView(2, terminating=True, member_id=3)),
)
POD_GONE = replace(_removed, statefulset=StatefulSetView(2, 2, 2), pods=_removed.pods[:2])
PVC_TERMINATING = replace(POD_GONE, pvcs=(PVCView(0), PVCView(1), PVCView(2, terminating=True)))
PVC_GONE = replace(POD_GONE, pvcs=(PVCView(0), PVCView(1)))

# Replacement of member 2 (ordinal 1) whose PVC was lost, by member 4.
PVC_LOST = with_pods(cluster(3, not_ready=frozenset({2})), PodView(1, ready=False, member_id=None))
_replace = replace(PVC_LOST, status=Bookkeeping(UID, {0: 1, 1: 4, 2: 3}, 5, REPLACE_2))
REPLACE_RECORDED = _replace
REPLACE_OLD_LEADS = replace(
    _replace, raft=replace(_replace.raft, leader_id=2, ready_ids=frozenset({1, 2, 3}))
)
REPLACE_OLD_REMOVED = without_member(_replace, 2)
_replace_learner = cluster(3, learners={}, in_flight=None)
REPLACE_NEW_VOTER = replace(
    without_member(cluster(4), 2), status=Bookkeeping(UID, {0: 1, 1: 4, 2: 3}, 5, REPLACE_2)
)


def _quorum_lost_two_down() -> Observed:
    return cluster(3, not_ready=frozenset({2, 3}))


ROWS: list[tuple[str, Observed, Action]] = [
    # --- bootstrap (once)
    (
        "bootstrap: allocate member 1 for ordinal 0 and persist the cluster id first",
        EMPTY,
        UpdateStatus(
            BOOTSTRAP, Reason.BOOTSTRAPPING, "ordinal 0 bootstraps a one-member cluster as member 1"
        ),
    ),
    ("bootstrap: then create the children with one replica", BOOTSTRAP_NO_STS, CreateChildren(1)),
    (
        "bootstrap: wait for ordinal 0 to lead",
        BOOTSTRAP_STARTING,
        Wait(Reason.WAITING_FOR_BOOTSTRAP, "waiting for member 1 to lead"),
    ),
    (
        "bootstrap: done once member 1 leads",
        BOOTSTRAP_LEADING,
        UpdateStatus(
            replace(BOOTSTRAP, in_flight=None), Reason.BOOTSTRAPPED, "member 1 leads the cluster"
        ),
    ),
    (
        "bootstrap: never a second time when status lost the cluster id",
        replace(cluster(3), status=Bookkeeping()),
        Wait(
            Reason.STATUS_LOST,
            "members exist but status has no cluster id; refusing to bootstrap again",
        ),
    ),
    (
        "children: a deleted child is re-created",
        replace(cluster(3), children_exist=False),
        CreateChildren(3),
    ),
    (
        "children: a deleted StatefulSet comes back at full size",
        replace(cluster(3), statefulset=None),
        CreateChildren(3),
    ),
    ("in sync", cluster(3), Done(Reason.IN_SYNC, "3 members in sync")),
    ("never below one member", cluster(1, replicas=0), Done(Reason.IN_SYNC, "1 members in sync")),
    # --- scale up
    (
        "up: record the change and allocate the next id",
        cluster(3, replicas=4),
        UpdateStatus(
            Bookkeeping(UID, {0: 1, 1: 2, 2: 3, 3: 4}, 5, ADD_4),
            Reason.SCALING_UP,
            "adding member 4 at ordinal 3 (3 → 4)",
        ),
    ),
    ("up: add the learner first", ADD_RECORDED, AddLearner(3, 4, "kv-3", url(3))),
    ("up: then grow the StatefulSet by one", LEARNER_ADDED, GrowStatefulSet(4)),
    (
        "up: learner pod still joining",
        LEARNER_POD_JOINING,
        Wait(Reason.LEARNER_CATCHING_UP, "member 4 is catching up"),
    ),
    (
        "up: learner not caught up",
        LEARNER_BEHIND,
        Wait(Reason.LEARNER_CATCHING_UP, "member 4 is catching up"),
    ),
    (
        "up: learner caught up starts the stabilization period",
        LEARNER_CAUGHT_UP,
        UpdateStatus(
            replace(LEARNER_CAUGHT_UP.status, in_flight=replace(ADD_4, caught_up_since=NOW)),
            Reason.LEARNER_CAUGHT_UP,
            "member 4 caught up",
        ),
    ),
    (
        "up: learner must stay stable",
        LEARNER_STABILIZING,
        Wait(Reason.LEARNER_STABILIZING, "member 4 stable for 6.0s more"),
    ),
    ("up: stable learner is promoted", LEARNER_STABLE, PromoteLearner(4)),
    (
        "up: falling behind restarts the stabilization period",
        LEARNER_FELL_BEHIND,
        UpdateStatus(
            LEARNER_BEHIND.status,
            Reason.LEARNER_FELL_BEHIND,
            "member 4 fell behind; stabilization restarts",
        ),
    ),
    (
        "up: promoted learner completes the change",
        PROMOTED,
        UpdateStatus(
            replace(PROMOTED.status, in_flight=None),
            Reason.MEMBER_ADDED,
            "member 4 is a voter at ordinal 3",
        ),
    ),
    (
        "up: spec dropped mid-add turns it into removing the same id",
        cluster(3, replicas=3, learners={3: 4}, in_flight=ADD_4),
        UpdateStatus(
            replace(cluster(3, learners={3: 4}).status, in_flight=Change(ChangeKind.REMOVE, 3, 4)),
            Reason.SCALE_UP_ABORTED,
            "spec.replicas is now 3; withdrawing member 4",
        ),
    ),
    # --- scale down
    (
        "down: record the removal of the highest ordinal",
        cluster(3, replicas=2),
        UpdateStatus(
            replace(cluster(3).status, in_flight=REMOVE_3),
            Reason.SCALING_DOWN,
            "removing member 3 at ordinal 2 (3 → 2)",
        ),
    ),
    ("down: remove it from Raft", REMOVE_RECORDED, RemoveMember(3)),
    ("down: move leadership away when it leads", LEAVER_LEADS, TransferLeadership(3, 1)),
    (
        "down: wait until the removal is applied",
        REMOVAL_NOT_APPLIED,
        Wait(Reason.CONFIG_CHANGE_PENDING, "a configuration change is not applied yet"),
    ),
    ("down: then shrink the StatefulSet", REMOVED_FROM_RAFT, ShrinkStatefulSet(2)),
    (
        "down: wait for the pod to go",
        SHRUNK_POD_TERMINATING,
        Wait(Reason.POD_TERMINATING, "waiting for pod 2 to go away"),
    ),
    ("down: then delete its PVC", POD_GONE, DeletePVC(2)),
    (
        "down: wait for the PVC to go",
        PVC_TERMINATING,
        Wait(Reason.PVC_TERMINATING, "waiting for the PVC of ordinal 2 to go away"),
    ),
    (
        "down: forget the ordinal last",
        PVC_GONE,
        UpdateStatus(
            Bookkeeping(UID, {0: 1, 1: 2}, 4, None),
            Reason.MEMBER_REMOVED,
            "member 3 removed from ordinal 2",
        ),
    ),
    (
        "down: never when the remaining voters would lack a healthy majority",
        cluster(3, replicas=2, in_flight=REMOVE_3, not_ready=frozenset({2})),
        Wait(
            Reason.REMOVAL_WOULD_BREAK_QUORUM, "removing member 3 would leave 1 of 2 voters healthy"
        ),
    ),
    (
        "down: removing an unhealthy voter is fine when the rest hold a majority",
        cluster(3, replicas=2, in_flight=REMOVE_3, not_ready=frozenset({3})),
        RemoveMember(3),
    ),
    # --- pods that go away are not a scale-in
    (
        "pod missing: wait for it to come back",
        with_pods(cluster(3, not_ready=frozenset({2})), drop=(1,)),
        Wait(Reason.POD_NOT_READY, "member 2 (pod 1) is not ready"),
    ),
    (
        "pod missing: no new member while one is away",
        with_pods(cluster(3, replicas=4, not_ready=frozenset({2})), drop=(1,)),
        Wait(Reason.POD_NOT_READY, "member 2 (pod 1) is not ready"),
    ),
    (
        "pod missing: a StatefulSet scaled down by hand is grown back",
        cluster(3, sts=1),
        GrowStatefulSet(3),
    ),
    # --- PVC lost
    (
        "PVC lost: a voter's pod runs empty → replace it with a fresh id",
        PVC_LOST,
        ReplaceMember(1, 2, 4, Bookkeeping(UID, {0: 1, 1: 4, 2: 3}, 5, REPLACE_2)),
    ),
    ("PVC lost: remove the old member first", REPLACE_RECORDED, RemoveMember(2)),
    ("PVC lost: old member leads → move leadership", REPLACE_OLD_LEADS, TransferLeadership(2, 1)),
    (
        "PVC lost: then add the fresh id as a learner",
        REPLACE_OLD_REMOVED,
        AddLearner(1, 4, "kv-1", url(1)),
    ),
    (
        "PVC lost: done when the fresh id is a voter",
        REPLACE_NEW_VOTER,
        UpdateStatus(
            Bookkeeping(UID, {0: 1, 1: 4, 2: 3}, 5, None),
            Reason.MEMBER_REPLACED,
            "member 4 is a voter at ordinal 1",
        ),
    ),
    # --- quorum lost: no membership change at all
    (
        "quorum lost: two of three voters down",
        _quorum_lost_two_down(),
        SetQuorumLost("1 of 3 voters healthy, 2 needed"),
    ),
    ("quorum lost: no leader", cluster(3, leader=None), SetQuorumLost("no leader")),
    (
        "quorum lost: nobody answers",
        replace(cluster(3), raft=RaftView()),
        SetQuorumLost("no member answered"),
    ),
    (
        "quorum lost: not even a wanted scale-down proceeds",
        cluster(3, replicas=2, in_flight=REMOVE_3, not_ready=frozenset({1, 2})),
        SetQuorumLost("1 of 3 voters healthy, 2 needed"),
    ),
    # --- a change already in flight
    (
        "in flight: a bigger spec does not start a second addition",
        replace(ADD_RECORDED, spec=replace(SPEC, replicas=5)),
        AddLearner(3, 4, "kv-3", url(3)),
    ),
    (
        "in flight: an applied-but-pending change blocks everything",
        cluster(3, replicas=4, pending=True),
        Wait(Reason.CONFIG_CHANGE_PENDING, "a configuration change is not applied yet"),
    ),
    # --- operator restarted mid-change (state left by each crash point)
    (
        "restart: AddLearner done before the crash → grow, not add again",
        LEARNER_ADDED,
        GrowStatefulSet(4),
    ),
    (
        "restart: crashed before AddLearner → add the same id",
        ADD_RECORDED,
        AddLearner(3, 4, "kv-3", url(3)),
    ),
    (
        "restart: RemoveMember done before the crash → shrink",
        REMOVED_FROM_RAFT,
        ShrinkStatefulSet(2),
    ),
    (
        "restart: learner without a record resumes its addition",
        cluster(3, replicas=4, learners={3: 4}),
        UpdateStatus(
            replace(cluster(3, learners={3: 4}).status, in_flight=ADD_4),
            Reason.RESUMING_LEARNER,
            "resuming the addition of learner 4",
        ),
    ),
    # --- drift and oddities
    (
        "orphan member (added by hand) is removed",
        replace(without_member(cluster(4), 0), status=Bookkeeping(UID, {0: 1, 1: 2, 2: 3}, 5)),
        RemoveMember(4),
    ),
    (
        "member id newer than our counter means our status is stale",
        replace(cluster(4), status=Bookkeeping(UID, {0: 1, 1: 2, 2: 3}, 4)),
        Wait(Reason.STATUS_STALE, "member 4 is newer than our status"),
    ),
    (
        "member removed behind our back whose pod kept data",
        without_member(cluster(3), 2),
        Wait(
            Reason.MEMBER_MISSING_FROM_CONFIG,
            "member 2 (ordinal 1) is not in the configuration; "
            "delete pod 1 and its PVC to have it replaced",
        ),
    ),
    (
        "pod runs as an unexpected member id",
        with_pods(cluster(3), PodView(1, member_id=9)),
        Wait(Reason.UNEXPECTED_MEMBER_IDENTITY, "pod 1 runs as member 9, expected 2"),
    ),
    ("StatefulSet grown by hand is shrunk back", cluster(3, sts=4), ShrinkStatefulSet(3)),
    (
        "a stale PVC of a scaled-away ordinal is deleted",
        replace(cluster(2), pvcs=(PVCView(0), PVCView(1), PVCView(2))),
        DeletePVC(2),
    ),
]


@pytest.mark.parametrize(("observed", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_transition(observed: Observed, expected: Action) -> None:
    assert plan(observed) == expected


@pytest.mark.parametrize("observed", [r[1] for r in ROWS], ids=[r[0] for r in ROWS])
def test_replanning_the_same_state_gives_the_same_action(observed: Observed) -> None:
    assert plan(observed) == plan(observed)


def test_transfer_picks_the_most_up_to_date_healthy_voter() -> None:
    o = cluster(
        5, replicas=4, in_flight=Change(ChangeKind.REMOVE, 4, 5), leader=5, not_ready=frozenset({2})
    )
    o = replace(o, raft=replace(o.raft, match_index={1: 90, 2: 100, 3: 99, 4: 99, 5: 100}))
    assert plan(o) == TransferLeadership(5, 3)


# ---------------------------------------------------------------- scripted runs on the world


def run_until_converged(world: World, limit: int = 400) -> None:
    for _ in range(limit):
        if world.converged() and isinstance(plan(world.observe(), CONFIG), Done):
            return
        world.step()
    raise AssertionError(f"no convergence to {world.replicas}: {world.status} {world.config}")


def test_scripted_1_3_5_3_1_3() -> None:
    world = World(replicas=1)
    for target in (1, 3, 5, 3, 1, 3):
        world.replicas = target
        run_until_converged(world)
    # Every id handed out once; the last scale-up used fresh ids.
    assert world.status.members == {0: 1, 1: 6, 2: 7}
    assert world.removed == {2, 3, 4, 5}


def _reference_actions() -> list[Action]:
    world = World(replicas=1)
    for target in (3, 1, 2):
        world.replicas = target
        run_until_converged(world)
    return world.actions


@pytest.mark.parametrize("crash_at", range(len(_reference_actions())))
def test_operator_killed_before_any_action_converges(crash_at: int) -> None:
    """Killing the operator between any two actions (the next one never happens) and
    restarting it loses no change and duplicates none (the world checks both)."""
    world = World(replicas=1)
    steps = 0
    for target in (3, 1, 2):
        world.replicas = target
        for _ in range(400):
            if world.converged() and isinstance(plan(world.observe(), CONFIG), Done):
                break
            world.step(crash=steps == crash_at)
            steps += 1
    assert world.converged()


@pytest.mark.parametrize("repeat_at", range(len(_reference_actions())))
def test_an_action_carried_out_twice_is_harmless(repeat_at: int) -> None:
    """A restart can replay the last action (crash after acting, before requeue)."""
    world = World(replicas=1)
    steps = 0
    for target in (3, 1, 2):
        world.replicas = target
        run_until_converged_with_replay(world, repeat_at, steps)
        steps = len(world.actions)
    assert world.converged()


def run_until_converged_with_replay(world: World, repeat_at: int, offset: int) -> None:
    for _ in range(400):
        if world.converged() and isinstance(plan(world.observe(), CONFIG), Done):
            return
        action = plan(world.observe(), CONFIG)
        world.execute(action)
        if len(world.actions) - 1 == repeat_at:
            world.execute(action)
        world.tick(3.0)
    raise AssertionError("no convergence")


# ---------------------------------------------------------------- properties

# Mostly quiet steps, so that changes make progress between faults.
FAULT_MIX = [Fault.NONE] * 4 + list(Fault) + [Fault.WIPE_PVC, Fault.SCALE]


def random_run(world: World, rnd: random.Random, steps: int) -> None:
    """Faults, stale pod/PVC views, operator crashes and uneven time, drawn from ``rnd``.

    Hypothesis drives ``rnd`` (rather than drawing each value itself) because its
    preference for simple values (dt=0, always the first pod) starves the scenarios
    that matter: time must pass for learners to be promoted.
    """
    for _ in range(steps):
        fault = rnd.choice(FAULT_MIX)
        world.inject(fault, rnd.randrange(20))
        world.step(
            staleness=rnd.randrange(3),
            crash=fault is Fault.CRASH_OPERATOR,
            dt=rnd.uniform(0.0, 6.0),
        )


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    replicas=st.integers(1, 5),
    rnd=st.randoms(use_true_random=False),
    steps=st.integers(10, 200),
)
def test_random_faults_never_break_safety_and_always_converge(
    replicas: int, rnd: random.Random, steps: int
) -> None:
    """Random sequences of spec changes, pod kills, data loss, partitions, log stalls,
    operator crashes and stale views. The world raises SafetyViolation on two changes
    in flight, a quorum-breaking removal, a shrink under a live member or a reused id;
    once the faults stop, the cluster converges to spec.replicas."""
    world = World(replicas=replicas)
    random_run(world, rnd, steps)
    world.partitioned.clear()
    world.stalled = 0
    run_until_converged(world)


@pytest.mark.parametrize("seed", range(40))
def test_seeded_soak(seed: int) -> None:
    """The same, from fixed seeds and longer runs: reproducible without hypothesis."""
    rnd = random.Random(seed)
    world = World(replicas=1 + seed % 5)
    random_run(world, rnd, 300)
    world.partitioned.clear()
    world.stalled = 0
    run_until_converged(world)
    assert len(world.status.members) == world.replicas
    assert world.status.next_member_id > max(world.status.members.values())
