"""How the operator reads the cluster from the members' own status answers."""

from __future__ import annotations

from raftkv.client import Member, StatusInfo
from raftkv_operator.observe import raft_view


def status(mid: int, role: str, term: int, *, pending: bool = False) -> StatusInfo:
    members = [
        Member(i, f"m{i}", [f"http://m{i}:2380"], [f"http://m{i}:2379"], False) for i in (1, 2, 3)
    ]
    return StatusInfo(
        id=mid,
        name=f"m{mid}",
        role=role,
        leader=1 if role == "leader" else 0,
        term=term,
        commit_index=10,
        applied_index=10,
        last_index=11,
        snapshot_index=0,
        members=members,
        conf_change_pending=pending,
    )


def test_a_pending_change_on_the_leader_is_seen() -> None:
    view = raft_view([status(1, "leader", 3, pending=True), status(2, "follower", 3)], frozenset())
    assert view.leader_id == 1
    assert view.config_change_pending


def test_without_a_leader_nothing_is_taken_as_pending() -> None:
    # Only a leader knows what it proposed; a follower's word is not evidence.
    view = raft_view([status(2, "follower", 3, pending=True)], frozenset())
    assert view.leader_id is None
    assert not view.config_change_pending


def test_the_higher_term_leader_wins_over_a_stale_one() -> None:
    view = raft_view(
        [status(1, "leader", 2, pending=True), status(3, "leader", 4)], frozenset({1, 2, 3})
    )
    assert view.leader_id == 3
    assert not view.config_change_pending
    assert view.ready_ids == frozenset({1, 2, 3})
