"""End to end, locally: a rolling configuration change under continuous writes.

A 3-member RaftKV (real operator, the Kubernetes stand-in, real ``raftkv serve``
processes played by ``kubelet.py``) gets a new ``spec.raft.snapshotCount``: that changes
the pod template, so the operator rolls the members one at a time. The kubelet stops a
deleted pod's process with SIGTERM and starts the new one from the StatefulSet's new
template, so every member really restarts with the new setting. At the end: every
member process was restarted exactly once, the member that led at the start was
restarted last, leadership was moved once, every acknowledged write is readable, and
the status says the roll is complete.

Then a roll onto an image that cannot be pulled: the first member restarted never
comes back, so the roll stops (``Degraded``/``RolloutStopped``, an Event) with no other
pod touched; reverting ``spec.image`` rolls that member back, and only that one.

Opt-in like the rest of ``e2e/`` (``pytest e2e/local``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_operator_e2e import NAME, STEP_TIMEOUT, TRANSIENT, World, Writer, world

from raftkv_operator.naming import GROUP, PLURAL, VERSION
from raftkv_operator.objects import REVISION_LABEL
from support.operator_harness import NS
from support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
__all__ = ["world"]  # the fixture, shared with test_operator_e2e

PODS = ("kv-0", "kv-1", "kv-2")
BROKEN_IMAGE = "registry.invalid/raftkv:does-not-exist"


def test_rolling_config_change_under_writes(world: World) -> None:
    world.create_raftkv(upgrade={"stabilizationSeconds": 1, "timeoutSeconds": 90})
    world.wait_in_sync(3)
    ordinal_of = {member_id: k for k, member_id in world.mapping().items()}
    first_leader = f"kv-{ordinal_of[world.leader()]}"
    pids = {pod: world.kubelet.pid(pod) for pod in PODS}
    restarted: list[str] = []

    def rolled() -> dict[str, Any] | None:
        for pod in PODS:
            pid = world.kubelet.pid(pod)
            if pid not in (None, pids[pod]) and pod not in restarted:
                restarted.append(pod)
        status = world.in_sync(3)
        if status is None or (status.get("rollout") or {}).get("phase") != "Complete":
            return None
        revision = status["rollout"]["targetRevision"]
        pods: list[Any] = world.core.list_namespaced_pod(NS).items
        if any(p.metadata.labels.get(REVISION_LABEL) != revision for p in pods):
            return None
        return status if len(restarted) == len(PODS) else None

    with Writer(world.client_urls) as writer:
        time.sleep(0.5)  # some writes before the change, too
        world.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, NAME, {"spec": {"raft": {"snapshotCount": 5000}}}
        )
        status = wait_for(
            "the roll to finish",
            rolled,
            timeout=3 * STEP_TIMEOUT,
            interval=0.1,
            ignore=TRANSIENT,
        )
        time.sleep(0.5)  # a few more writes against the rolled members

    assert restarted[-1] == first_leader, (restarted, first_leader)
    for pod in PODS:
        assert world.kubelet.procs[pod].env["RAFTKV_SNAPSHOT_COUNT"] == "5000"
    reasons = world.event_reasons()
    assert reasons.count("LeadershipTransferred") == 1, reasons
    assert reasons.count("MemberPodDeleted") == 3, reasons
    assert "RolloutComplete" in reasons
    assert status["rollout"]["progress"] == "3/3"
    world.assert_kept(writer)


def test_roll_onto_a_broken_image_stops_and_reverts(world: World) -> None:
    world.kubelet.broken_images.add(BROKEN_IMAGE)
    world.create_raftkv(upgrade={"stabilizationSeconds": 1, "timeoutSeconds": 10})
    start = world.wait_in_sync(3)
    good_revision = start["rollout"]["targetRevision"]
    good_image = world.raftkv()["spec"].get("image")
    ordinal_of = {member_id: k for k, member_id in world.mapping().items()}
    leader = f"kv-{ordinal_of[world.leader()]}"

    def pods() -> dict[str, Any]:
        listed: list[Any] = world.core.list_namespaced_pod(NS).items
        return {str(p.metadata.name): p for p in listed}

    uids = {name: pod.metadata.uid for name, pod in pods().items()}
    pids = {pod: world.kubelet.pid(pod) for pod in PODS}

    with Writer(world.client_urls) as writer:
        world.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, NAME, {"spec": {"image": BROKEN_IMAGE}}
        )
        stopped = wait_for(
            "the roll to stop on the broken image",
            lambda: (
                (c := world.conditions().get("Degraded")) is not None
                and c["status"] == "True"
                and c["reason"] == "RolloutStopped"
                and c
            ),
            timeout=STEP_TIMEOUT,
            interval=0.1,
            ignore=TRANSIENT,
        )
        assert "ImagePullBackOff" in stopped["message"], stopped
        assert "RolloutStopped" in world.event_reasons()
        # Exactly one pod was replaced, a follower, and it does not run; the other two
        # are the very pods (and processes) of the start.
        now = pods()
        replaced = [name for name in PODS if now[name].metadata.uid != uids[name]]
        assert len(replaced) == 1, replaced
        (broken,) = replaced
        assert broken != leader, (broken, leader)
        assert world.kubelet.pid(broken) is None
        for name in set(PODS) - {broken}:
            assert world.kubelet.pid(name) == pids[name], name
        # Two of three members serve: the writes go on while the roll is stopped.
        acked_when_stopped = len(writer.acked)
        wait_for(
            "writes to go on with one member down",
            lambda: len(writer.acked) > acked_when_stopped + 20,
            timeout=STEP_TIMEOUT,
            interval=0.1,
        )
        time.sleep(1)  # the stopped roll stays stopped: no pod is touched meanwhile
        assert {n: p.metadata.uid for n, p in pods().items() if n != broken} == {
            n: uids[n] for n in PODS if n != broken
        }

        # The revert, with a deadline a loaded machine's restart keeps within (the short
        # one made the stop quick; a member restarted slower than it would stop the roll
        # back too).
        revert = {"image": good_image, "upgrade": {"timeoutSeconds": 120}}
        world.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, NAME, {"spec": revert}
        )

        def reverted() -> dict[str, Any] | None:
            status = world.in_sync(3)
            if status is None or (status.get("rollout") or {}).get("phase") != "Complete":
                return None
            if world.conditions().get("Degraded", {}).get("status") == "True":
                return None
            if any(p.metadata.labels.get(REVISION_LABEL) != good_revision for p in pods().values()):
                return None
            return status

        status = wait_for(
            "the revert to finish",
            reverted,
            timeout=3 * STEP_TIMEOUT,
            interval=0.1,
            ignore=TRANSIENT,
        )
        time.sleep(0.5)  # a few more writes against the reverted members

    assert status["rollout"]["targetRevision"] == good_revision
    # Only the broken member was rolled back; the two that never left kept running.
    for name in set(PODS) - {broken}:
        assert world.kubelet.pid(name) == pids[name], name
    assert world.kubelet.pid(broken) is not None
    assert world.kubelet.procs[broken].restarts == 0
    world.assert_kept(writer)
