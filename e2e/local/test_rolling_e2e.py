"""End to end, locally: a rolling configuration change under continuous writes.

A 3-member RaftKV (real operator, the Kubernetes stand-in, real ``raftkv serve``
processes played by ``kubelet.py``) gets a new ``spec.raft.snapshotCount``: that changes
the pod template, so the operator rolls the members one at a time. The kubelet stops a
deleted pod's process with SIGTERM and starts the new one from the StatefulSet's new
template, so every member really restarts with the new setting. At the end: every
member process was restarted exactly once, the member that led at the start was
restarted last, leadership was moved once, every acknowledged write is readable, and
the status says the roll is complete.

Opt-in like the rest of ``e2e/`` (``pytest e2e/local``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_operator_e2e import NAME, STEP_TIMEOUT, TRANSIENT, World, Writer, world

from raftkv.client import Client
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from raftkv_operator.objects import REVISION_LABEL
from support.operator_harness import NS
from support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
__all__ = ["world"]  # the fixture, shared with test_operator_e2e

PODS = ("kv-0", "kv-1", "kv-2")


def test_rolling_config_change_under_writes(world: World) -> None:
    world.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaftKV",
            "metadata": {"name": NAME},
            "spec": {
                "replicas": 3,
                "raft": {"tickMs": 50, "electionTicks": 10, "heartbeatTicks": 1},
                "upgrade": {"stabilizationSeconds": 1, "timeoutSeconds": 90},
            },
        },
    )
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

    assert len(writer.acked) > 50, (len(writer.acked), writer.failures)
    with Client(world.client_urls, timeout=5, retries=2) as client:
        stored = {kv.key: kv.value for kv in client.list("k", limit=10_000)}
    lost = {k for k, v in writer.acked.items() if stored.get(k) != v}
    assert not lost, f"{len(lost)} acknowledged writes missing, e.g. {sorted(lost)[:5]}"
