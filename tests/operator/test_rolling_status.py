"""What a RaftKV reports about a rolling change, from plain observations, and the
restart record's round trip through status (no API server).

The revision itself: a hash of the rendered pod template, so anything that reaches the
pods changes it and nothing else does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from planner_world import NOW, cluster
from test_rolling_planner import NEW, R3, rolled

from raftkv_operator import objects as o
from raftkv_operator.model import Done, Observed, Reason, Restart
from raftkv_operator.status import (
    conditions,
    report,
    restart_from_status,
    restart_to_status,
    rollout,
)

DONE = Done(Reason.IN_SYNC)


def by_type(observed: Observed) -> dict[str, tuple[str, str, str]]:
    return {
        c["type"]: (c["status"], c["reason"], c["message"])
        for c in conditions(observed, DONE, generation=3, now=NOW)
    }


def test_every_member_at_the_target_is_complete() -> None:
    observed = rolled(cluster(3), pods={0: NEW, 1: NEW, 2: NEW})
    assert rollout(observed) == {
        "targetRevision": NEW,
        "updated": 3,
        "total": 3,
        "progress": "3/3",
        "current": "",
        "phase": "Complete",
    }
    assert by_type(observed)["Rolling"][:2] == ("False", "UpToDate")


def test_a_roll_in_progress_names_the_member_being_restarted() -> None:
    observed = rolled(cluster(3), pods={1: NEW}, restart=R3)
    state = rollout(observed)
    assert (state["progress"], state["current"], state["phase"]) == ("1/3", "kv-2", "Rolling")
    got = by_type(observed)
    assert got["Rolling"] == (
        "True",
        "RollingUpdate",
        "1/3 members at revision B; restarting kv-2",
    )
    assert got["Degraded"][0] == "False"


def test_members_not_yet_at_the_target_are_rolling_before_any_restart() -> None:
    assert rollout(rolled(cluster(3)))["phase"] == "Rolling"


def test_a_stopped_roll_is_degraded_with_the_reason() -> None:
    stopped = replace(R3, failed="member 3 (pod 2) is not back: ImagePullBackOff")
    observed = rolled(cluster(3), pods={2: NEW}, restart=stopped)
    assert rollout(observed)["phase"] == "Stopped"
    got = by_type(observed)
    assert got["Degraded"] == ("True", "RolloutStopped", stopped.failed)
    assert got["Rolling"] == ("False", "RolloutStopped", stopped.failed)


def test_no_revision_no_rolling_report() -> None:
    """Observations without a revision (the older tables) report as before."""
    observed = cluster(3)
    assert "rollout" not in report(observed, DONE, 1)
    assert "Rolling" not in by_type(observed)


@pytest.mark.parametrize(
    "record",
    [
        R3,
        replace(R3, started_at=NOW + 0.25, ready_since=NOW + 3.5),
        replace(R3, failed="not back"),
    ],
)
def test_the_restart_record_survives_a_round_trip(record: Restart) -> None:
    patch = restart_to_status(record)
    assert restart_from_status(patch) == record


def test_a_new_record_clears_the_old_ones_optional_fields() -> None:
    """Status writes are merge patches: a field left out would survive from the
    previous record (a new restart would inherit the old one's ``failed``)."""
    patch = restart_to_status(R3)["restartInFlight"]
    assert patch["failed"] is None
    assert patch["readySince"] is None
    assert restart_to_status(None) == {"restartInFlight": None}
    assert restart_from_status({}) is None


# ---------------------------------------------------------------- the member revision


def obj(**spec: Any) -> o.RaftKVObject:
    return o.RaftKVObject(name="kv", namespace="default", uid="u-1", spec=spec)


BASE = {"replicas": 3, "image": "raftkv:1"}


@pytest.mark.parametrize(
    "change",
    [
        {"image": "raftkv:2"},
        {"imagePullPolicy": "Always"},
        {"resources": {"limits": {"cpu": "1"}}},
        {"raft": {"tickMs": 50}},
        {"nodeSelector": {"disk": "ssd"}},
        {"tolerations": [{"key": "k", "operator": "Exists"}]},
        {"affinity": {"nodeAffinity": {}}},
    ],
)
def test_what_reaches_the_pods_changes_the_revision(change: dict[str, Any]) -> None:
    assert o.member_revision(obj(**BASE)) != o.member_revision(obj(**{**BASE, **change}))


@pytest.mark.parametrize(
    "change",
    [{"replicas": 5}, {"storage": {"size": "2Gi"}}, {"upgrade": {"timeoutSeconds": 9}}],
)
def test_what_does_not_reach_the_pods_keeps_it(change: dict[str, Any]) -> None:
    assert o.member_revision(obj(**BASE)) == o.member_revision(obj(**{**BASE, **change}))


def test_the_default_image_counts_when_the_spec_names_none() -> None:
    plain = obj(replicas=3)
    assert o.member_revision(plain, "raftkv:1") != o.member_revision(plain, "raftkv:2")


def test_the_statefulset_carries_it_and_is_on_delete() -> None:
    sts = o.statefulset(obj(**BASE), 3)
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert labels[o.REVISION_LABEL] == o.member_revision(obj(**BASE))
    assert len(labels[o.REVISION_LABEL]) == 16
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    # The selector is immutable and must not include it.
    assert o.REVISION_LABEL not in sts["spec"]["selector"]["matchLabels"]
