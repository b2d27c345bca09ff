"""Scripted scenarios on the simulator, named after the property each one protects.

They run on a quiet network (see harness.quiet_cluster) with the full invariant checker
attached, so besides its own assertions every scenario also proves that no safety
property broke along the way.
"""

from __future__ import annotations

from raftkv.raft import RawNode
from raftkv.raft.config import Config
from raftkv.raft.errors import NotAMember
from raftkv.raft.types import ConfChange, ConfChangeType, Entry, Message, MessageType, Role

from .cluster import TICK
from .harness import (
    add_learner,
    change_membership,
    commit,
    figure8_schedule,
    others,
    quiet_cluster,
    wait_applied,
    wait_for_leader,
)

ELECTION_TICKS = 10


# --- elections ---------------------------------------------------------------------


def test_single_voter_cluster_elects_itself_and_commits() -> None:
    c = quiet_cluster(1)
    ld = wait_for_leader(c)
    assert ld == 1
    idx = commit(c, b"alone")
    wait_applied(c, idx, [1])


def test_prevote_rejoining_minority_does_not_disrupt_leader() -> None:
    """Thesis §9.6: a follower cut off from the leader campaigns in vain; with PreVote
    it never bumps its term, so when it rejoins, the leader keeps its term and its job."""
    c = quiet_cluster(3)
    ld = wait_for_leader(c)
    commit(c, b"before")
    term = c.raw(ld).term
    f = others(c.live(), ld)[0]
    c.partition([[f], others(c.live(), f)])
    c.run_ticks(10 * ELECTION_TICKS)
    assert c.raw(f).term == term, "PreVote must keep a partitioned member's term"
    c.heal()
    c.run_ticks(5 * ELECTION_TICKS)
    assert c.leader() == ld
    assert c.raw(ld).term == term
    idx = commit(c, b"after")
    wait_applied(c, idx, c.live())


def test_check_quorum_isolated_leader_steps_down() -> None:
    """Thesis §6.2: a leader that hears from no quorum for an election timeout steps
    down, so clients stop waiting on it; the majority elects a new leader."""
    c = quiet_cluster(3)
    ld = wait_for_leader(c)
    commit(c, b"before")
    term = c.raw(ld).term
    rest = others(c.live(), ld)
    c.partition([[ld], rest])
    c.run_ticks(3 * ELECTION_TICKS)
    assert c.raw(ld).role != Role.LEADER
    new = wait_for_leader(c, among=rest)
    assert c.raw(new).term > term
    c.heal()
    idx = commit(c, b"after")
    wait_applied(c, idx, c.live())
    assert c.raw(ld).term >= c.raw(new).term


def test_leader_transfer_completes() -> None:
    """Thesis §3.10: the transferee is brought up to date, told to campaign at once,
    and wins the next term."""
    c = quiet_cluster(3)
    ld = wait_for_leader(c)
    commit(c, b"before")
    term = c.raw(ld).term
    target = others(c.live(), ld)[0]
    assert c.transfer_leader(ld, target) is None
    assert c.run_until(lambda: c.leader() == target, 3 * ELECTION_TICKS * TICK)
    assert c.raw(target).term == term + 1
    idx = commit(c, b"after")
    wait_applied(c, idx, c.live())


def test_isolated_learner_never_campaigns() -> None:
    """A learner does not count towards any quorum, so it must never start an election
    (the checker also fails the run on any vote request it sends)."""
    c = quiet_cluster(3)
    wait_for_leader(c)
    idx = add_learner(c, 4)
    wait_applied(c, idx, [4])
    term = c.raw(4).term
    c.partition([[4], [1, 2, 3]])
    c.run_ticks(10 * ELECTION_TICKS)
    assert c.raw(4).role == Role.FOLLOWER
    assert c.raw(4).term == term
    c.heal()
    idx = commit(c, b"after")
    wait_applied(c, idx, [1, 2, 3, 4])


# --- replication and durability ----------------------------------------------------


def test_members_proposing_on_commit_agree_on_one_sequence() -> None:
    """raftexample's TestProposeOnCommit: every member proposes a new value each time it
    applies one; all of them must apply the same sequence."""
    c = quiet_cluster(3)
    wait_for_leader(c)
    members = c.live()
    seen = {m: c.host(m).sm.applied for m in members}
    sent = dict.fromkeys(members, 0)
    for m in members:
        c.propose(m, f"{m}-0".encode())
    deadline = c.now + 400 * TICK
    while c.now < deadline and min(sent.values()) < 30:
        c.run_ticks(1)
        for m in members:
            applied = c.host(m).sm.applied
            if applied > seen[m]:
                seen[m] = applied
                sent[m] += 1
                c.propose(m, f"{m}-{sent[m]}".encode())
    assert min(sent.values()) >= 30
    top = max(c.host(m).sm.applied for m in members)
    wait_applied(c, top, members)
    digests = {c.host(m).sm.history[top] for m in members}
    assert len(digests) == 1


def test_whole_cluster_restart_keeps_committed_entries() -> None:
    """§5.1/Figure 2: what was committed survives every member losing its memory at
    once; the checker verifies each re-applied entry equals the original."""
    c = quiet_cluster(3)
    wait_for_leader(c)
    last = 0
    for k in range(10):
        last = commit(c, f"v{k}".encode())
    wait_applied(c, last, c.live())
    for m in c.live():
        c.crash(m)
    c.run_ticks(5)
    for m in c.crashed():
        c.restart(m)
    wait_applied(c, last, [1, 2, 3])
    idx = commit(c, b"after")
    wait_applied(c, idx, [1, 2, 3])


def test_far_behind_follower_catches_up_via_snapshot() -> None:
    """§7: once the leader compacted the entries a follower misses, it ships a
    snapshot; the follower installs it and continues from the log."""
    c = quiet_cluster(3, snapshot_catchup_entries=0)
    ld = wait_for_leader(c)
    f = others(c.live(), ld)[0]
    c.crash(f)
    last = 0
    for k in range(30):
        last = commit(c, f"v{k}".encode())
    for m in c.live():
        c.compact(m, c.host(m).sm.applied)
    c.restart(f)
    wait_applied(c, last, [f])
    assert c.host(f).store.snap_index > 0
    assert c.stats.snapshots_installed >= 1
    idx = commit(c, b"after")
    wait_applied(c, idx, [1, 2, 3])


def test_isolated_leader_serves_no_stale_read() -> None:
    """Thesis §6.4: a leader cut off from the majority may not know that a newer leader
    committed more; ReadIndex must confirm leadership with a quorum first. CheckQuorum
    is off so the old leader keeps believing it leads."""
    c = quiet_cluster(3, check_quorum=False)
    ld = wait_for_leader(c)
    commit(c, b"before")
    rest = others(c.live(), ld)
    c.partition([[ld], rest])
    new = wait_for_leader(c, among=rest)
    idx = commit(c, b"newer", via=new)
    assert c.raw(ld).role == Role.LEADER  # still believes it leads
    ctx, err = c.read_index(ld)
    assert err is None
    c.run_ticks(3 * ELECTION_TICKS)
    # A ReadState at the old leader would be below `idx`: the checker fails the run.
    assert all(rs.request_ctx != ctx for _, rs in c.read_log)
    c.heal()
    wait_applied(c, idx, c.live())
    ctx2, err2 = c.read_index(new)
    assert err2 is None
    assert c.run_until(lambda: any(rs.request_ctx == ctx2 for _, rs in c.read_log), 20 * TICK)


def test_figure8_old_term_entry_is_not_committed_by_counting_replicas() -> None:
    c = figure8_schedule()
    # x was overwritten (legitimately: it was never committed) and nobody applied it.
    assert all(e.data != b"x" for e in c.checker.committed.values())


def test_follower_recovers_after_its_inflight_window_was_lost() -> None:
    """Raft must tolerate silent message loss (§5.1): a follower whose whole window of
    in-flight appends was lost must be sent to again (the simulator found the core
    stalling here forever; a heartbeat response now frees a full window)."""
    c = quiet_cluster(3, max_inflight_msgs=1)
    c.timing.report_unreachable = 0.0  # the loss goes unnoticed, as Raft must tolerate
    ld = wait_for_leader(c)
    first = commit(c, b"first")
    f = others(c.live(), ld)[0]
    wait_applied(c, first, [f])
    # Cut f off just long enough to lose one append (well under an election timeout).
    c.partition([[f], others(c.live(), f)])
    assert c.propose(ld, b"lost") is None
    c.run_ticks(2)
    c.heal()
    idx = commit(c, b"next")
    wait_applied(c, idx, [f], ticks=10 * ELECTION_TICKS)


# --- membership --------------------------------------------------------------------


def test_learner_promoted_then_counts_towards_quorum() -> None:
    c = quiet_cluster(3)
    wait_for_leader(c)
    idx = add_learner(c, 4)
    wait_applied(c, idx, [4])
    change_membership(c, ConfChange(ConfChangeType.ADD_NODE, 4))
    assert c.committed_conf().voters == (1, 2, 3, 4)
    # With two voters down, the remaining two of four are no quorum; with 4 back they are.
    ld = wait_for_leader(c)
    down = others([1, 2, 3], ld)[:1]
    for m in down:
        c.crash(m)
    idx = commit(c, b"three-of-four")
    wait_applied(c, idx, others([1, 2, 3, 4], *down))


def test_removed_leader_steps_down_after_removal_commits() -> None:
    """Thesis §4.2.2: a leader that commits its own removal steps down, and the
    remaining members elect a leader among themselves and carry on."""
    c = quiet_cluster(3)
    ld = wait_for_leader(c)
    commit(c, b"before")
    rest = others(c.live(), ld)
    change_membership(c, ConfChange(ConfChangeType.REMOVE_NODE, ld))
    assert c.run_until(
        lambda: c.host(ld).raw is None or c.host(ld).raw.role != Role.LEADER,  # type: ignore[union-attr]
        5 * TICK,
    )
    new = wait_for_leader(c, among=rest)
    assert c.committed_conf().voters == tuple(rest)
    idx = commit(c, b"after", via=new)
    wait_applied(c, idx, rest)


def test_snapshot_carries_membership() -> None:
    """A member that starts from a snapshot must know the membership as of the
    snapshot's index, or it could count votes against the wrong configuration."""
    c = quiet_cluster(3, snapshot_catchup_entries=0)
    ld = wait_for_leader(c)
    idx = add_learner(c, 4)
    wait_applied(c, idx, [4])
    change_membership(c, ConfChange(ConfChangeType.ADD_NODE, 4))
    last = commit(c, b"x")
    wait_applied(c, last, [1, 2, 3, 4])
    for m in c.live():
        c.compact(m, c.host(m).sm.applied)
    snap = c.host(ld).store.snapshot
    assert snap is not None
    assert snap.metadata.conf_state.voters == (1, 2, 3, 4)
    # Member 5 joins after the compaction: it can only catch up from the snapshot.
    idx5 = add_learner(c, 5)
    wait_applied(c, idx5, [5])
    s5 = c.host(5).store.snapshot
    assert s5 is not None
    assert 4 in s5.metadata.conf_state.voters
    assert c.raw(5).conf_state.voters == (1, 2, 3, 4)
    assert 5 in c.raw(5).conf_state.learners


# --- regressions: core bugs the simulator found ------------------------------------


def test_leader_reelected_with_its_removal_pending_refuses_proposals() -> None:
    c = quiet_cluster(2)
    ld = wait_for_leader(c)
    commit(c, b"before")
    other = others(c.live(), ld)[0]
    c.partition([[ld], [other]])
    assert c.propose_conf_change(ld, ConfChange(ConfChangeType.REMOVE_NODE, ld)) is None
    c.run_ticks(2 * ELECTION_TICKS)  # CheckQuorum: ld steps down
    assert c.raw(ld).role != Role.LEADER
    c.heal()
    # ld's log (with the removal) is longer, so only ld can win the next election.
    wait_for_leader(c, among=[ld])
    assert isinstance(c.propose(ld, b"late"), NotAMember)


def test_no_ack_for_entries_truncated_before_they_were_persisted() -> None:
    node = RawNode.bootstrap(Config(id=2, seed=1), voters=[1, 2, 3])
    while node.has_ready():
        node.advance(node.ready())
    # Leader 1 of term 2 appends 4..6; before the Ready is taken, leader 3 of term 3
    # overwrites index 4. Both messages are stepped between two Readys.
    t2 = tuple(Entry(2, i, data=f"a{i}".encode()) for i in (4, 5, 6))
    node.step(Message(MessageType.APP, to=2, sender=1, term=2, index=3, log_term=1, entries=t2))
    node.step(
        Message(
            MessageType.APP,
            to=2,
            sender=3,
            term=3,
            index=3,
            log_term=1,
            entries=(Entry(3, 4, data=b"b4"),),
        )
    )
    rd = node.ready()
    persisted_last = rd.entries[-1].index if rd.entries else 3
    acks = [m.index for m in rd.messages if m.type == MessageType.APP_RESP and not m.reject]
    assert acks, (acks, persisted_last)
    assert max(acks) <= persisted_last, (acks, persisted_last)
