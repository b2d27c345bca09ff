"""The conditions a RaftKV reports, from plain observations (no API server).

``Available`` means the cluster takes writes; ``Ready`` means it is what the spec asks
for. A real cluster showed why both are needed: ``kubectl wait --for=condition=
Available`` returned when the first of three members was up ("1 of 1 voters ready"),
some 40 s before the other two had joined.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from planner_world import NOW, cluster

from raftkv_operator.model import Action, Bookkeeping, Done, Observed, Reason, Wait
from raftkv_operator.status import conditions

DONE = Done(Reason.IN_SYNC)


def by_type(observed: Observed, action: Action = DONE) -> dict[str, tuple[str, str]]:
    return {
        c["type"]: (c["status"], c["reason"])
        for c in conditions(observed, action, generation=3, now=NOW)
    }


def test_a_cluster_at_spec_is_available_and_ready() -> None:
    got = by_type(cluster(3))
    assert got["Available"] == ("True", "QuorumHealthy")
    assert got["Ready"] == ("True", "AllMembersReady")
    assert got["Degraded"][0] == "False"
    assert got["Progressing"][0] == "False"


def test_the_first_member_of_three_is_available_but_not_ready() -> None:
    """The case ``kubectl wait --for=condition=Available`` got wrong."""
    got = by_type(cluster(1, replicas=3))
    assert got["Available"] == ("True", "QuorumHealthy")
    assert got["Ready"] == ("False", "Scaling")


def test_a_learner_still_joining_is_not_ready() -> None:
    got = by_type(cluster(2, replicas=3, learners={2: 3}))
    assert got["Ready"] == ("False", "Scaling")


def test_scaling_down_is_not_ready_until_the_member_is_gone() -> None:
    assert by_type(cluster(5, replicas=3))["Ready"] == ("False", "Scaling")


def test_an_unready_voter_makes_it_not_ready_but_still_available() -> None:
    got = by_type(cluster(3, not_ready=frozenset({3})))
    assert got["Available"] == ("True", "QuorumHealthy")
    assert got["Ready"] == ("False", "MembersNotReady")


def test_a_step_left_to_take_is_not_ready() -> None:
    wait = Wait(Reason.POD_NOT_READY, "waiting")
    got = by_type(cluster(3), wait)
    assert got["Ready"][0] == "False"
    assert got["Progressing"][0] == "True"


def test_lost_quorum_is_neither_available_nor_ready() -> None:
    got = by_type(cluster(3, not_ready=frozenset({2, 3}), leader=None))
    assert got["Available"][0] == "False"
    assert got["Ready"][0] == "False"


def test_bootstrapping_is_not_ready() -> None:
    observed = cluster(1)
    observed = replace(observed, status=Bookkeeping(cluster_id=None))
    assert by_type(observed)["Ready"] == ("False", "Bootstrapping")


@pytest.mark.parametrize("kind", ["Available", "Progressing", "Degraded", "Ready"])
def test_every_condition_carries_the_generation(kind: str) -> None:
    (found,) = [c for c in conditions(cluster(3), DONE, generation=9, now=NOW) if c["type"] == kind]
    assert found["observedGeneration"] == 9
    assert found["lastTransitionTime"]
