"""End to end, locally: a forced recovery after losing a majority, with real members.

Three members take writes; once the survivor-to-be has applied everything the leader
committed, the nodes of two members are lost with their volumes (their processes are
killed and never restarted there). The operator stops at QuorumLost and touches
nothing until ``raftkv.dev/force-new-cluster=auto`` is set; then the survivor is
restarted with ``--force-new-cluster``, the annotation is removed, and the two others
come back one at a time on new volumes with new ids. At the end the cluster has three
voters again and every acknowledged write is readable.

Opt-in like the rest of ``e2e/local`` (``pytest e2e/local``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_operator_e2e import NAME, STEP_TIMEOUT, TRANSIENT, World, Writer, world

from raftkv.client import Client
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from raftkv_operator.recovery_model import ANNOTATION
from support.operator_harness import NS
from support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
__all__ = ["world"]  # the fixture, shared with test_operator_e2e


def test_forced_recovery_after_losing_two_of_three(world: World) -> None:
    world.create_raftkv()
    world.wait_in_sync(3)
    with Writer(world.client_urls) as writer:
        wait_for("some writes", lambda: len(writer.acked) >= 50, timeout=STEP_TIMEOUT)
    acked = dict(writer.acked)
    survivor_url = world.client_urls[0]

    def survivor_has_everything() -> bool:
        with Client(world.client_urls[:3], timeout=2, retries=1) as client:
            commit = client.status().commit_index
        with Client([survivor_url], timeout=2, retries=1) as client:
            return client.status().applied_index >= commit

    # Everything acknowledged is on kv-0 before the others go: then none may be lost.
    wait_for("kv-0 caught up", survivor_has_everything, timeout=STEP_TIMEOUT, ignore=TRANSIENT)
    old_ids = world.mapping()
    world.kubelet.lose("kv-1")
    world.kubelet.lose("kv-2")

    def condition(kind: str) -> dict[str, Any]:
        conds = (world.raftkv().get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == kind), {})

    wait_for(
        "QuorumLost",
        lambda: condition("Available").get("reason") == "QuorumLost",
        timeout=STEP_TIMEOUT,
        ignore=TRANSIENT,
    )
    assert world.mapping() == old_ids
    assert (world.raftkv().get("status") or {}).get("recovery") is None

    world.custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, NAME, {"metadata": {"annotations": {ANNOTATION: "auto"}}}
    )
    started = time.monotonic()

    def recovered() -> dict[str, Any] | None:
        status = world.in_sync(3)
        if status is None or (status.get("recovery") or {}).get("phase") != "Complete":
            return None
        return status

    status = wait_for("the recovery", recovered, timeout=4 * STEP_TIMEOUT, ignore=TRANSIENT)
    record = status["recovery"]
    assert (record["ordinal"], record["memberID"]) == (0, old_ids[0])
    assert ANNOTATION not in (world.raftkv()["metadata"].get("annotations") or {})
    ids = world.mapping()
    assert ids[0] == old_ids[0]
    assert {ids[1], ids[2]}.isdisjoint({old_ids[1], old_ids[2]})
    reasons = world.event_reasons()
    for reason in (
        "RecoveryStarted",
        "ForcedNewCluster",
        "RetiringStaleMember",
        "RecoveryComplete",
    ):
        assert reason in reasons, (reason, reasons)
    # Every acknowledged write is there, read through each member.
    for url in world.client_urls[:3]:
        with Client([url], timeout=5, retries=3) as client:
            for key, value in acked.items():
                found = client.get(key, consistency="serializable")
                assert found is not None, (url, key)
                assert found.value == value, (url, key)
    with Client(world.client_urls[:3], timeout=5, retries=3) as client:
        client.put("after-recovery", b"yes")
        found = client.get("after-recovery")
        assert found is not None
        assert found.value == b"yes"
    assert time.monotonic() - started > 0  # the loss had to last before anything moved
