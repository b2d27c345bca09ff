"""Restore (``spec.restore``) in the planner, the pod template and the report.

Tables: the bootstrap of a restored RaftKV adopts the id ``raftkv snapshot restore``
picked (and only a one-voter cluster at ordinal 0's peer URL), waits on a failed
restore, and the ``Restored`` condition; the init container as rendered (valid pod
template, on every pod but acting on ordinal 0 only) and how a failure is read from
the pod status. Properties over the planner world: a restored RaftKV converges to
``spec.replicas`` with the restored member at ordinal 0 and never reuses an id, under
faults; a failed restore never grows the cluster.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planner_world import CONFIG, SPEC, UID, Fault, World, cluster

from raftkv_operator import objects as o
from raftkv_operator import restore
from raftkv_operator.model import (
    AddLearner,
    Bookkeeping,
    Change,
    ChangeKind,
    Done,
    GrowStatefulSet,
    Observed,
    PodView,
    RaftMember,
    RaftView,
    Reason,
    UpdateStatus,
    Wait,
)
from raftkv_operator.planner import plan
from raftkv_operator.status import conditions

K8S_VERSION = "1.30"
FROM = "s3://backups/prod/raftkv-20270101T030000Z-000000004711.snapshot"
RESTORED_ID = 3_000_000_000


def bootstrapping(leader: int | None, *, peer_url: str | None = None, **kw: Any) -> Observed:
    """Ordinal 0 mapped to member 1, the bootstrap in flight, a restore asked for."""
    base = cluster(1)
    book = Bookkeeping(
        cluster_id=UID,
        members={0: 1},
        next_member_id=2,
        in_flight=Change(ChangeKind.BOOTSTRAP, 0, 1),
    )
    raft = RaftView()
    pods: tuple[PodView, ...] = (PodView(ordinal=0, ready=False, member_reachable=False),)
    if leader is not None:
        url = peer_url if peer_url is not None else SPEC.peer_url(0)
        raft = RaftView(
            reachable=True,
            leader_id=leader,
            term=1,
            commit_index=1,
            members=(RaftMember(leader, "kv-0", url),),
            match_index={leader: 1},
            ready_ids=frozenset({leader}),
        )
        pods = (PodView(ordinal=0, member_id=leader),)
    return replace(
        base,
        spec=replace(base.spec, restore_from=FROM),
        status=book,
        raft=raft,
        pods=pods,
        **kw,
    )


# --------------------------------------------------------------------------- tables


def test_the_restored_member_is_adopted_and_ids_move_past_it() -> None:
    action = plan(bootstrapping(RESTORED_ID), CONFIG)
    assert isinstance(action, UpdateStatus)
    assert action.reason is Reason.RESTORED_MEMBER_ADOPTED
    assert action.status.members == {0: RESTORED_ID}
    assert action.status.next_member_id == RESTORED_ID + 1
    assert action.status.in_flight == Change(ChangeKind.BOOTSTRAP, 0, RESTORED_ID)
    # ... after which the bootstrap finishes as usual.
    adopted = replace(bootstrapping(RESTORED_ID), status=action.status)
    done = plan(adopted, CONFIG)
    assert isinstance(done, UpdateStatus)
    assert done.reason is Reason.BOOTSTRAPPED
    assert done.status.in_flight is None


def test_a_smaller_restored_id_keeps_the_counter() -> None:
    observed = bootstrapping(7)
    observed = replace(observed, status=replace(observed.status, next_member_id=20))
    action = plan(observed, CONFIG)
    assert isinstance(action, UpdateStatus)
    assert action.status.next_member_id == 20


@pytest.mark.parametrize(
    "observed",
    [
        # another peer URL: not ordinal 0's member
        bootstrapping(RESTORED_ID, peer_url="http://elsewhere:2380"),
        # no restore asked for: the plain bootstrap rules (wait for member 1)
        replace(bootstrapping(RESTORED_ID), spec=SPEC),
    ],
    ids=["other-peer-url", "no-restore"],
)
def test_only_the_restored_member_is_adopted(observed: Observed) -> None:
    action = plan(observed, CONFIG)
    assert isinstance(action, Wait)
    assert action.reason is Reason.WAITING_FOR_BOOTSTRAP


def test_a_two_member_configuration_is_not_adopted() -> None:
    observed = bootstrapping(RESTORED_ID)
    two = replace(
        observed.raft,
        members=(*observed.raft.members, RaftMember(RESTORED_ID + 1, "x", "http://x:2380")),
    )
    action = plan(replace(observed, raft=two), CONFIG)
    assert isinstance(action, Wait)


def test_a_failed_restore_waits_with_the_reason() -> None:
    observed = bootstrapping(None, restore_failure="no such object s3://backups/prod/x")
    action = plan(observed, CONFIG)
    assert isinstance(action, Wait)
    assert action.reason is Reason.RESTORE_FAILED
    assert "no such object" in action.message
    rows = {c["type"]: c for c in conditions(observed, action, 1)}
    assert rows["Restored"]["status"] == "False"
    assert rows["Restored"]["reason"] == "RestoreFailed"
    assert "no such object" in rows["Restored"]["message"]


def test_the_restored_condition() -> None:
    waiting = bootstrapping(None)
    rows = {c["type"]: c for c in conditions(waiting, plan(waiting, CONFIG), 1)}
    assert (rows["Restored"]["status"], rows["Restored"]["reason"]) == ("False", "Restoring")
    done = replace(
        waiting,
        status=Bookkeeping(
            cluster_id=UID, members={0: RESTORED_ID}, next_member_id=RESTORED_ID + 1
        ),
    )
    rows = {c["type"]: c for c in conditions(done, Done(), 1)}
    assert (rows["Restored"]["status"], rows["Restored"]["reason"]) == ("True", "Restored")
    # No restore asked for: no such condition.
    plain = cluster(1)
    assert "Restored" not in {c["type"] for c in conditions(plain, Done(), 1)}


# --------------------------------------------------------------------------- the pod


def rkv(restore_spec: dict[str, Any] | None) -> o.RaftKVObject:
    spec: dict[str, Any] = {"replicas": 3}
    if restore_spec is not None:
        spec["restore"] = restore_spec
    return o.RaftKVObject(name="kv", namespace="prod", uid="uid-1", spec=spec)


@pytest.mark.parametrize(
    "restore_spec",
    [
        {"from": FROM, "s3": {"endpoint": "http://minio:9000", "credentialsSecret": "creds"}},
        {"from": "raftkv/raftkv-20270101T030000Z.snapshot", "pvc": "backups"},
    ],
    ids=["s3", "pvc"],
)
def test_the_init_container_is_in_a_valid_statefulset(restore_spec: dict[str, Any]) -> None:
    sts = o.statefulset(rkv(restore_spec), 1)
    kubernetes_validate.validate(sts, K8S_VERSION, strict=True)
    pod = sts["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "restore"
    assert init["command"] == ["sh", "-c", restore.SCRIPT]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    env = {e["name"]: e for e in init["env"]}
    # The member's own identity, so that it restores exactly the member that starts.
    for name in ("POD_NAME", "RAFTKV_DATA_DIR", "RAFTKV_ADVERTISE_PEER_URL"):
        assert env[name] == next(e for e in o.member_env(rkv(None)) if e["name"] == name)
    assert env["RAFTKV_CLUSTER_TOKEN"]["value"] == "uid-1"
    assert "configMapKeyRef" in env["RAFTKV_INITIAL_CLUSTER_STATE"]["valueFrom"]
    if "pvc" in restore_spec:
        assert env["RAFTKV_RESTORE_FROM"]["value"] == (
            "/restore/raftkv/raftkv-20270101T030000Z.snapshot"
        )
        assert pod["volumes"] == [
            {
                "name": "restore-source",
                "persistentVolumeClaim": {"claimName": "backups", "readOnly": True},
            }
        ]
    else:
        assert env["RAFTKV_RESTORE_FROM"]["value"] == FROM
        assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio:9000"
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "creds"


def test_no_restore_no_init_container_and_the_same_revision() -> None:
    pod = o.pod_spec(rkv(None))
    assert "initContainers" not in pod
    assert o.member_revision(rkv(None)) != o.member_revision(rkv({"from": FROM}))


def _pod(**init_status: Any) -> dict[str, Any]:
    return {"status": {"initContainerStatuses": [{"name": "restore", **init_status}]}}


@pytest.mark.parametrize(
    ("pod", "failure"),
    [
        (None, None),
        ({"status": {}}, None),
        (_pod(state={"running": {}}), None),
        (_pod(state={"terminated": {"exitCode": 0}}), None),
        (
            _pod(state={"terminated": {"exitCode": 1, "message": "error: no such object x\n"}}),
            "error: no such object x",
        ),
        (
            _pod(
                state={"waiting": {"reason": "CrashLoopBackOff"}},
                lastState={"terminated": {"exitCode": 1, "message": "is corrupt"}},
            ),
            "is corrupt",
        ),
        (_pod(state={"terminated": {"exitCode": 2}}), "exit code 2"),
        (
            _pod(
                state={"terminated": {"exitCode": 0}},
                lastState={"terminated": {"exitCode": 1, "message": "old failure"}},
            ),
            None,
        ),
    ],
)
def test_failure_from_the_pod_status(pod: dict[str, Any] | None, failure: str | None) -> None:
    assert restore.failure(pod) == failure


# --------------------------------------------------------------------------- properties

FAULTS = [Fault.NONE] * 4 + list(Fault)


def run(world: World, rnd: random.Random, steps: int) -> None:
    for _ in range(steps):
        fault = rnd.choice(FAULTS)
        world.inject(fault, rnd.randrange(20))
        world.step(
            staleness=rnd.randrange(3),
            crash=fault is Fault.CRASH_OPERATOR,
            dt=rnd.uniform(0.0, 6.0),
        )


def settle(world: World, limit: int = 400) -> None:
    world.partitioned.clear()
    world.stalled = 0
    for _ in range(limit):
        if world.converged() and isinstance(plan(world.observe(), CONFIG), Done):
            return
        world.step()
    raise AssertionError(f"no convergence: {world.status} {world.config}")


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    replicas=st.integers(1, 5),
    restored_id=st.integers(1, (1 << 32) - 1),
    rnd=st.randoms(use_true_random=False),
    steps=st.integers(0, 120),
)
def test_a_restored_raftkv_grows_to_its_replicas_under_faults(
    replicas: int, restored_id: int, rnd: random.Random, steps: int
) -> None:
    """Whatever id the restore picked: ordinal 0 keeps it, the cluster grows to
    spec.replicas, and no id is handed out twice (the world raises on a reuse)."""
    world = World(replicas=replicas, restore_id=restored_id)
    run(world, rnd, steps)
    settle(world)
    if 0 in world.status.members and world.pvcs.get(0) is not None:
        # The restored member is still ordinal 0 unless a fault wiped its data.
        assert world.status.members[0] == restored_id or restored_id in world.removed
    assert world.status.next_member_id > max(world.status.members.values())
    assert restored_id in world.ever_added


@settings(max_examples=40, deadline=None, database=None)
@given(replicas=st.integers(1, 5), rnd=st.randoms(use_true_random=False))
def test_a_failed_restore_never_grows_the_cluster(replicas: int, rnd: random.Random) -> None:
    world = World(replicas=replicas, restore_id=RESTORED_ID, restore_broken=True)
    for _ in range(60):
        world.step(staleness=rnd.randrange(3), dt=rnd.uniform(0.0, 6.0))
    assert not any(isinstance(a, AddLearner | GrowStatefulSet) for a in world.actions)
    assert world.status.members == {0: 1}
    assert world.sts == 1
    assert not world.formed
    last = plan(world.observe(), CONFIG)
    assert isinstance(last, Wait)
    assert last.reason is Reason.RESTORE_FAILED
