"""Majority-quorum arithmetic (raftkv.raft.quorum): §5.2 majorities, §5.3 the commit
index, §5.2 vote tallies, thesis §6.2/§6.4 "is a quorum there"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.raft import quorum
from raftkv.raft.quorum import VoteResult


@pytest.mark.parametrize(
    ("n", "q"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)]
)
def test_5_2_majority_is_more_than_half(n: int, q: int) -> None:
    assert quorum.majority(n) == q


@given(st.integers(min_value=1, max_value=50))
def test_5_2_any_two_majorities_intersect(n: int) -> None:
    # The pigeonhole fact that Election Safety and Leader Completeness rest on.
    assert 2 * quorum.majority(n) > n
    # And a majority is the smallest such size: one fewer need not intersect.
    assert 2 * (quorum.majority(n) - 1) <= n


@pytest.mark.parametrize(
    ("voters", "match", "want"),
    [
        ((1,), {1: 7}, 7),
        ((1, 2, 3), {1: 5, 2: 5, 3: 5}, 5),
        ((1, 2, 3), {1: 9, 2: 4, 3: 1}, 4),
        ((1, 2, 3), {1: 9, 2: 1, 3: 4}, 4),
        ((1, 2, 3, 4), {1: 9, 2: 8, 3: 2, 4: 1}, 2),  # even size: 3 of 4 needed
        ((1, 2, 3, 4, 5), {1: 9, 2: 9, 3: 3, 4: 2, 5: 1}, 3),
        ((1, 2, 3), {1: 9}, 0),  # voters without progress hold nothing
        ((1, 2, 3), {1: 9, 2: 8}, 8),
        ((1, 2, 3), {1: 9, 2: 8, 7: 100}, 8),  # a non-voter (learner) never counts
        ((), {1: 9}, 0),  # nobody votes: nothing is committed
    ],
)
def test_5_3_committed_index_is_what_a_majority_of_voters_holds(
    voters: tuple[int, ...], match: dict[int, int], want: int
) -> None:
    assert quorum.committed_index(voters, match) == want


configurations = st.lists(
    st.integers(min_value=1, max_value=20), min_size=1, max_size=9, unique=True
).flatmap(
    lambda voters: st.tuples(
        st.just(voters),
        st.dictionaries(
            st.integers(min_value=1, max_value=25), st.integers(min_value=0, max_value=1000)
        ),
    )
)


@given(configurations)
def test_5_3_committed_index_equals_the_sorted_median_definition(
    cfg: tuple[list[int], dict[int, int]],
) -> None:
    voters, match = cfg
    # The textbook definition: sort the voters' match indexes (missing ones are 0) and
    # take the element that a majority is at or above.
    ordered = sorted(match.get(v, 0) for v in voters)
    median = ordered[(len(voters) - 1) // 2]
    got = quorum.committed_index(voters, match)
    assert got == median
    # It is held by a majority, and nothing larger is.
    assert quorum.has_quorum(voters, {v for v in voters if match.get(v, 0) >= got})
    assert not quorum.has_quorum(voters, {v for v in voters if match.get(v, 0) > got})


@pytest.mark.parametrize(
    ("voters", "votes", "want"),
    [
        ((1,), {1: True}, VoteResult.WON),  # a lone voter elects itself
        ((1,), {1: False}, VoteResult.LOST),
        ((1, 2, 3), {1: True}, VoteResult.PENDING),
        ((1, 2, 3), {1: True, 2: True}, VoteResult.WON),
        ((1, 2, 3), {1: True, 2: False}, VoteResult.PENDING),
        ((1, 2, 3), {1: True, 2: False, 3: False}, VoteResult.LOST),
        ((1, 2, 3, 4), {1: True, 2: True}, VoteResult.PENDING),  # 3 of 4 needed
        ((1, 2, 3, 4), {1: True, 2: False, 3: False}, VoteResult.LOST),
        ((1, 2, 3, 4, 5), {1: True, 2: True, 3: False, 4: False}, VoteResult.PENDING),
        ((1, 2, 3), {1: True, 7: True, 8: True}, VoteResult.PENDING),  # learners' grants
        ((1, 2, 3), {1: True, 7: False, 8: False, 9: False}, VoteResult.PENDING),
        ((), {}, VoteResult.LOST),  # nobody can be elected by nobody
    ],
)
def test_5_2_vote_result_needs_a_majority_of_voters(
    voters: tuple[int, ...], votes: dict[int, bool], want: VoteResult
) -> None:
    assert quorum.vote_result(voters, votes) == want


@given(
    st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=9, unique=True),
    st.data(),
)
def test_5_2_a_round_is_never_both_won_and_lost_and_ends_once_all_answered(
    voters: list[int], data: st.DataObject
) -> None:
    votes = {v: data.draw(st.booleans()) for v in voters}
    granted = sum(votes.values())
    result = quorum.vote_result(voters, votes)
    # With every voter answered the round is decided, by a strict majority of grants.
    assert result == (
        VoteResult.WON if granted >= quorum.majority(len(voters)) else VoteResult.LOST
    )


@pytest.mark.parametrize(
    ("voters", "members", "want"),
    [
        ((1,), {1}, True),
        ((1, 2, 3), {1}, False),
        ((1, 2, 3), {1, 2}, True),
        ((1, 2, 3), {1, 7, 8}, False),  # acks of non-voters prove nothing
        ((1, 2, 3, 4), {1, 2}, False),
        ((1, 2, 3, 4), {1, 2, 4}, True),
        ((), {1}, False),
    ],
)
def test_6_2_6_4_has_quorum_counts_only_voters(
    voters: tuple[int, ...], members: set[int], want: bool
) -> None:
    assert quorum.has_quorum(voters, members) is want
    assert quorum.count(voters, members) == len(set(voters) & members)
