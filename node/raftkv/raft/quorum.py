"""Majority-quorum arithmetic: the one place the core counts members (etcd's quorum/).

Raft's safety rests on one fact: any two majorities of the same voter set intersect
(§5.2, §5.4). An elected leader shares a member with every quorum that committed an
entry, so with the election restriction (§5.4.1) it holds every committed entry. Every
decision that needs "enough members" goes through these functions, over plain ids,
sets and dicts, so that the arithmetic is written (and tested) once.

Only voters count. Learners (thesis §4.2.1) receive the log but never make up a quorum;
callers pass the voters of the configuration in force and any superset of acks.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping
from enum import Enum


class VoteResult(Enum):
    """The outcome of an election round so far (§5.2)."""

    PENDING = "pending"
    """Neither a majority of grants nor enough rejections to rule one out yet."""
    WON = "won"
    """A majority of voters granted the vote."""
    LOST = "lost"
    """So many voters rejected that a majority of grants is impossible."""


def majority(n: int) -> int:
    """How many of `n` voters form a quorum: more than half (§5.2).

    Two sets of this size out of the same `n` always share a member, which is what
    makes a vote once per term (Figure 2) enough to elect at most one leader per term
    (Election Safety), and a committed entry survive into every later leader's log.
    """
    return n // 2 + 1


def count(voters: Collection[int], members: Container[int]) -> int:
    """How many of `voters` are among `members` (acks, grants, active members)."""
    return sum(1 for v in voters if v in members)


def has_quorum(voters: Collection[int], members: Container[int]) -> bool:
    """Whether `members` contain a majority of `voters`.

    The shared test behind: a leader still leading (CheckQuorum: a quorum was active
    within an election timeout, thesis §6.2), a ReadIndex heartbeat round confirming
    leadership (thesis §6.4), and strict reconfiguration (a change is refused when the
    reachable voters would not form a quorum of the new configuration, thesis §4.1 and
    etcd's StrictReconfigCheck). Members that are not voters are ignored, so a learner's
    ack never confirms anything. An empty voter set has no quorum.
    """
    return count(voters, members) >= majority(len(voters))


def committed_index(voters: Collection[int], match: Mapping[int, int]) -> int:
    """The largest index that a majority of `voters` hold, given each one's match
    index (§5.3: an entry is committed once a majority has stored it).

    Voters missing from `match` count as holding nothing (0). Sorting the match indexes
    in decreasing order, it is the majority(n)-th one: at least that many voters hold
    it, and no larger index is held by as many. An empty voter set commits nothing (0).

    This is only the quorum half of the commit rule: a leader may commit this index
    only if its entry is from the leader's current term (§5.4.2, Figure 8); older
    entries then commit indirectly.
    """
    if not voters:
        return 0
    matches = sorted((match.get(v, 0) for v in voters), reverse=True)
    return matches[majority(len(matches)) - 1]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """Tally an election (§5.2) or a PreVote round (thesis §9.6).

    `votes` maps a member to whether it granted its vote; members that are not in
    `voters` (a learner answering, or a member removed since) are ignored, so only the
    candidate's own configuration decides. WON once a majority granted; LOST once the
    rejections leave fewer unanswered-or-granted voters than a majority, so the
    candidate can step down at once instead of waiting for its election timeout.
    An empty voter set is LOST: no one can be elected by nobody.
    """
    q = majority(len(voters))
    granted = sum(1 for v in voters if votes.get(v) is True)
    rejected = sum(1 for v in voters if votes.get(v) is False)
    if granted >= q:
        return VoteResult.WON
    if rejected > len(voters) - q:
        return VoteResult.LOST
    return VoteResult.PENDING
