"""The membership rules of `raftkv.server.membership`, as plain functions over plain
data: no member, no HTTP."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from raftkv.raft import ConfState
from raftkv.server import errors as E
from raftkv.server import membership as M
from raftkv.server.membership import MemberInfo, Registry


def _registry() -> Registry:
    return Registry(
        {
            1: MemberInfo(1, "a", ("http://a:2380",), ("http://a:2379",)),
            2: MemberInfo(2, "b", ("http://b:2380",)),
        },
        removed={5},
    )


def test_new_member_gets_a_fresh_id_above_every_id_ever_seen() -> None:
    info = M.plan_new_member(_registry(), (1, 2), peer_urls=["http://c:2380/"])
    assert info == MemberInfo(6, "member-6", ("http://c:2380",), ())
    assert M.next_member_id(Registry()) == 1


def test_new_member_keeps_its_requested_id_name_and_normalised_urls() -> None:
    info = M.plan_new_member(
        _registry(),
        (1, 2),
        peer_urls=["http://c:2380"],
        client_urls=["http://c:2379/"],
        name="c",
        member_id=9,
    )
    assert info == MemberInfo(9, "c", ("http://c:2380",), ("http://c:2379",))


@pytest.mark.parametrize(
    ("peer", "client", "member_id", "error", "code"),
    [
        ("ftp://c:1", "http://c:2379", None, E.BadRequest, "invalid_url"),
        ("http://c:2380", "http://nohost", None, E.BadRequest, "invalid_url"),
        ("http://b:2380", "http://c:2379", None, E.Conflict, "member_exists"),
        ("http://c:2380", "http://c:2379", 5, E.Conflict, "id_removed"),
        ("http://c:2380", "http://c:2379", 2, E.Conflict, "member_exists"),
        # In the configuration but not (yet) in the registry.
        ("http://c:2380", "http://c:2379", 3, E.Conflict, "member_exists"),
    ],
)
def test_new_member_refusals(
    peer: str, client: str, member_id: int | None, error: type[E.ApiError], code: str
) -> None:
    with pytest.raises(error) as exc:
        M.plan_new_member(
            _registry(), (1, 2, 3), peer_urls=[peer], client_urls=[client], member_id=member_id
        )
    assert exc.value.code == code


def test_urls_are_checked_before_conflicts() -> None:
    with pytest.raises(E.BadRequest):
        M.plan_new_member(_registry(), (1, 2), peer_urls=["bad"], member_id=5)


def test_promote_and_remove_checks() -> None:
    cs = ConfState(voters=(1, 2), learners=(3,))
    M.check_promotable(cs, 3)
    with pytest.raises(E.Conflict) as exc:
        M.check_promotable(cs, 2)
    assert exc.value.code == "not_a_learner"
    with pytest.raises(E.NotFound):
        M.check_promotable(cs, 4)
    M.check_member(cs.members(), 1)
    with pytest.raises(E.NotFound):
        M.check_member(cs.members(), 4)


def test_member_view() -> None:
    cs = ConfState(voters=(1,), learners=(2,))
    assert M.member_view(_registry(), cs, 2) == {
        "id": 2,
        "name": "b",
        "peer_urls": ["http://b:2380"],
        "client_urls": [],
        "learner": True,
    }
    with pytest.raises(E.NotFound):
        M.member_view(_registry(), cs, 3)


@dataclass(frozen=True)
class P:
    match: int
    learner: bool = False
    recent_active: bool = True


def test_transfer_goes_to_the_most_caught_up_active_voter() -> None:
    progress = {
        1: P(100),  # self
        2: P(50),
        3: P(90),
        4: P(99, learner=True),
        5: P(98, recent_active=False),
    }
    assert M.best_transfer_target(1, progress) == 3
    assert M.transfer_target(1, (1, 2, 3, 4, 5), progress, None) == 3
    assert M.transfer_target(1, (1, 2, 3, 4, 5), progress, 2) == 2


def test_transfer_refusals() -> None:
    with pytest.raises(E.NotFound):
        M.transfer_target(1, (1, 2), {}, 7)
    with pytest.raises(E.Unavailable) as exc:
        M.transfer_target(1, (1, 2), {1: P(5), 2: P(5, recent_active=False)}, None)
    assert exc.value.code == "no_target"
    assert M.best_transfer_target(1, {1: P(5)}) == 0


@pytest.mark.parametrize(
    ("joined", "removed", "stopping", "status", "code"),
    [
        (False, False, False, 503, "joining"),
        (True, True, False, 410, "member_removed"),
        (True, False, True, 503, "shutting_down"),
    ],
)
def test_serving_check(joined: bool, removed: bool, stopping: bool, status: int, code: str) -> None:
    with pytest.raises(E.ApiError) as exc:
        M.check_serving(joined=joined, removed=removed, member_id=4, stopping=stopping)
    assert (exc.value.status, exc.value.code) == (status, code)
    M.check_serving(joined=True, removed=False, member_id=4, stopping=False)
