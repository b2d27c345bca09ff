"""Helpers for scripted scenarios on top of `Cluster`.

A scenario uses the same cluster, network and invariant checker as the random
schedules, only with a quiet network (no loss, short delays, no clock jitter) so that
each step it scripts happens when it says; the checker still watches every step.
"""

from __future__ import annotations

import functools
from typing import Any

from raftkv.raft.errors import RaftError
from raftkv.raft.types import ConfChange, ConfChangeType, Role

from .cluster import TICK, Cluster, CoreKnobs, Timing
from .network import NetworkParams
from .trace import Trace


class ScenarioError(AssertionError):
    """The scenario could not reach the state it needs (not a safety violation)."""


def quiet_cluster(
    n: int = 3, *, seed: int = 0, trace: Trace | None = None, **knobs: Any
) -> Cluster:
    """`knobs` are CoreKnobs fields (e.g. snapshot_catchup_entries=0)."""
    return Cluster(
        seed,
        n,
        knobs=CoreKnobs(**knobs),
        net=NetworkParams(min_delay=1, max_delay=3),
        timing=Timing(tick_jitter=0, report_unreachable=1.0),
        trace=trace,
    )


def wait_for_leader(c: Cluster, ticks: int = 100, among: list[int] | None = None) -> int:
    def found() -> bool:
        ld = c.leader()
        return ld is not None and (among is None or ld in among)

    if not c.run_until(found, ticks * TICK):
        raise ScenarioError(f"no leader{f' among {among}' if among else ''} within {ticks} ticks")
    ld = c.leader()
    assert ld is not None
    return ld


def applied_everywhere(c: Cluster, index: int, members: list[int]) -> bool:
    return all(c.host(m).sm.applied >= index for m in members)


def commit(c: Cluster, data: bytes, *, via: int | None = None, ticks: int = 100) -> int:
    """Propose `data` (through the leader unless `via` is given) until some member
    applies it; returns its index."""
    c.watched[data] = 0
    deadline = c.now + ticks * TICK
    while c.now < deadline:
        node = via if via is not None else wait_for_leader(c, (deadline - c.now) // TICK + 1)
        err = c.propose(node, data)
        if err is None and c.run_until(lambda: c.watched[data] > 0, 20 * TICK):
            return c.watched[data]
    raise ScenarioError(f"{data!r} was not applied within {ticks} ticks")


def wait_applied(c: Cluster, index: int, members: list[int], ticks: int = 100) -> None:
    if not c.run_until(lambda: applied_everywhere(c, index, members), ticks * TICK):
        state = {m: c.host(m).sm.applied for m in members}
        raise ScenarioError(f"index {index} not applied on {members} in {ticks} ticks: {state}")


def change_membership(c: Cluster, cc: ConfChange, ticks: int = 100) -> int:
    """Propose a membership change through the leader until it commits; returns the
    index of its entry."""
    deadline = c.now + ticks * TICK
    while c.now < deadline:
        ld = wait_for_leader(c, (deadline - c.now) // TICK + 1)
        before = len(c.checker.conf_index)
        err: RaftError | None = c.propose_conf_change(ld, cc)
        changed = functools.partial(_conf_changes_beyond, c, before)
        if err is None and c.run_until(changed, 30 * TICK):
            return c.checker.conf_index[-1]
        c.run_ticks(2)
    raise ScenarioError(f"{cc} did not commit within {ticks} ticks")


def _conf_changes_beyond(c: Cluster, n: int) -> bool:
    return len(c.checker.conf_index) > n


def add_learner(c: Cluster, node: int) -> int:
    c.add_member(node)
    return change_membership(c, ConfChange(ConfChangeType.ADD_LEARNER, node))


def roles(c: Cluster) -> dict[int, Role | None]:
    return {i: (h.raw.role if h.raw is not None else None) for i, h in c.hosts.items()}


def others(members: list[int], *exclude: int) -> list[int]:
    return [m for m in members if m not in exclude]


def figure8_schedule() -> Cluster:
    """The paper's Figure 8 (§5.4.2), scripted: an entry of an old term that a new
    leader has replicated to a majority is still not committed, because a member
    holding a newer-term entry at that index can still be elected and overwrite it.
    A core that commits old-term entries by counting replicas applies x at index i in
    phase (c) and the other entry at i in phase (d): the checker fails the run."""
    c = quiet_cluster(5, max_size_per_msg=1, max_inflight_msgs=1)
    s1 = wait_for_leader(c)
    wait_applied(c, commit(c, b"base"), c.live())
    s2 = others(c.live(), s1)[0]
    rest = others(c.live(), s1, s2)
    # (a) s1 replicates x at index i to s2 only.
    c.partition([[s1, s2], rest])
    assert c.propose(s1, b"x") is None
    i = c.host(s1).store.last_index
    assert c.run_until(lambda: c.host(s2).store.term_at(i) is not None, 10 * TICK)
    # (b) the majority side elects s5, whose own entry at i reaches nobody.
    s5 = wait_for_leader(c, among=rest)
    c.partition([[s1, s2, *others(rest, s5)], [s5]])
    t5 = c.raw(s5).term
    assert c.host(s5).store.term_at(i) == t5
    # (c) s1 or s2 (the only logs ending in x) wins the next term and replicates x to
    # s3 but nothing of its own term to anyone but its partner.
    s3, s4 = others(rest, s5)
    leader_c = wait_for_leader(c, among=[s1, s2])
    partner = s2 if leader_c == s1 else s1
    c.block(leader_c, s4)
    x_term = c.host(s1).store.term_at(i)
    assert c.run_until(lambda: c.host(s3).store.term_at(i) == x_term, 30 * TICK)
    c.block(leader_c, s3)
    c.run_ticks(5)
    # (d) s5 comes back and, with the votes of s3 and s4, overwrites index i.
    c.partition([[leader_c, partner], [s5, s3, s4]])
    wait_for_leader(c, among=[s5, s3, s4], ticks=200)
    idx = commit(c, b"after", ticks=200)
    wait_applied(c, idx, [s5, s3, s4])
    c.heal()
    idx = commit(c, b"healed", ticks=200)
    wait_applied(c, idx, c.live())
    return c
