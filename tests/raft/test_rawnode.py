"""The RawNode contract: Ready/advance hands every output out exactly once and in a safe
order, restart refuses storage that cannot be a Raft log, wire garbage is ignored, and
proposals that cannot succeed fail at once with a typed error."""

from __future__ import annotations

import pytest

from raftkv.raft import (
    NONE,
    ConfChange,
    ConfChangeInProgress,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NoLeader,
    NotAMember,
    RaftError,
    RawNode,
    Role,
    Snapshot,
    SnapshotMetadata,
    StorageMismatch,
    UnsafeConfChange,
    decode_conf_change,
    errors,
)
from raftkv.raft.types import LOCAL_MESSAGES, ProgressState, Ready

from .harness import Network, conf

MT = MessageType


def cfg(i: int = 1, **kw: int | bool) -> Config:
    return Config(id=i, seed=i, **kw)  # type: ignore[arg-type]


# --- Ready / advance -------------------------------------------------------------


def test_bootstrap_first_ready_carries_the_initial_entries_and_hard_state() -> None:
    node = RawNode.bootstrap(cfg(2), voters=[3, 1, 2], contexts={1: b"u1"})
    assert node.has_ready()
    rd = node.ready()
    assert [e.index for e in rd.entries] == [1, 2, 3]
    assert all(e.term == 1 and e.type == EntryType.CONF_CHANGE for e in rd.entries)
    assert [decode_conf_change(e.data).node_id for e in rd.entries] == [1, 2, 3]
    assert decode_conf_change(rd.entries[0].data).context == b"u1"
    assert rd.hard_state == HardState(term=1, vote=NONE, commit=3)
    assert rd.committed_entries == rd.entries
    assert rd.must_sync
    assert rd.messages == []
    node.advance(rd)
    assert not node.has_ready()
    assert node.conf_state == conf([1, 2, 3])
    assert node.applied == 3


def test_bootstrap_rejects_inconsistent_voters() -> None:
    for voters in ([], [1, 1], [0, 1], [2, 3]):
        with pytest.raises(ValueError):
            RawNode.bootstrap(cfg(1), voters=voters)


def test_entries_are_handed_out_once_even_if_inputs_arrive_before_advance() -> None:
    net = Network([1])
    net.campaign(1)
    node = net.nodes[1]
    node.propose(b"a")
    rd1 = node.ready()
    assert [e.data for e in rd1.entries] == [b"a"]
    node.propose(b"b")  # while rd1 is being persisted
    rd2 = node.ready()
    assert [e.data for e in rd2.entries] == [b"b"]
    # The leader's own copy counts toward commit only once it is persisted.
    assert rd2.committed_entries == []
    node.advance(rd1)
    node.advance(rd2)
    rd3 = node.ready()
    assert rd3.entries == []
    assert [e.data for e in rd3.committed_entries] == [b"a", b"b"]
    node.advance(rd3)
    assert not node.has_ready()
    assert node.applied == node.commit == 4


def test_follower_entries_handed_out_once_when_a_step_lands_between_ready_and_advance() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    n2 = net.nodes[2]

    def app(prev: int, data: bytes) -> Message:
        e = Entry(2, prev + 1, data=data)
        return Message(MT.APP, to=2, sender=1, term=2, index=prev, log_term=2, entries=(e,))

    n2.step(app(4, b"a"))
    rd1 = n2.ready()
    n2.step(app(5, b"b"))  # arrives while rd1 is being persisted
    rd2 = n2.ready()
    assert [e.data for e in rd1.entries] == [b"a"]
    assert [e.data for e in rd2.entries] == [b"b"]
    n2.advance(rd1)
    n2.advance(rd2)
    assert n2.raft.log.stable == n2.last_index == 6
    assert not n2.has_ready()


def test_overwritten_entries_are_handed_out_again() -> None:
    """A leader's append may replace entries handed out in a Ready not yet advanced:
    the replacement goes out, and the stale advance does not mark it durable."""
    net = Network([1, 2, 3])
    net.elect(1)
    n2 = net.nodes[2]
    n2.step(Message(MT.APP, to=2, sender=1, term=2, index=4, log_term=2, entries=(Entry(2, 5),)))
    rd1 = n2.ready()
    n2.step(Message(MT.APP, to=2, sender=3, term=3, index=4, log_term=2, entries=(Entry(3, 5),)))
    rd2 = n2.ready()
    assert rd2.entries == [Entry(3, 5)]
    n2.advance(rd1)
    assert n2.raft.log.stable == 4
    n2.advance(rd2)
    assert n2.raft.log.stable == 5


def test_hard_state_only_when_changed() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.tick()
    n2 = net.nodes[2]
    n2.step(Message(MT.HEARTBEAT, to=2, sender=1, term=2, commit=4))
    rd = n2.ready()
    assert rd.messages
    assert rd.hard_state is None
    assert rd.soft_state is None
    assert not rd.must_sync
    n2.advance(rd)


def test_commit_only_hard_state_needs_no_fsync_but_term_vote_and_conf_changes_do() -> None:
    """etcd/raft's MustSync: a Ready that only moves the commit index may be written
    without an fsync; new entries, a new term or vote, and a committed configuration
    change may not."""
    net = Network([1, 2, 3], pre_vote=False)
    net.nodes[1].campaign()
    rd = net.nodes[1].ready()  # a new term and a vote for itself
    assert rd.hard_state is not None
    assert rd.vote_changed
    assert rd.must_sync
    net.handle_ready(1, rd)
    net.stabilize()
    leader = net.nodes[1]
    assert leader.role == Role.LEADER
    leader.propose(b"x")
    rd = leader.ready()
    assert rd.entries
    assert rd.must_sync
    net.handle_ready(1, rd)
    while net.queue:  # the followers persist and acknowledge
        net.deliver_one()
        if not leader.has_ready():
            continue
        rd = leader.ready()
        if rd.hard_state is not None and not rd.entries:
            assert rd.hard_state.commit == leader.last_index
            assert not rd.vote_changed
            assert not rd.must_sync
        net.handle_ready(1, rd)
    # A committed configuration change must be synced even with nothing else to write.
    cc = Ready(committed_entries=[Entry(2, 9, EntryType.CONF_CHANGE, b"")])
    assert cc.must_sync
    assert not Ready(hard_state=HardState(2, 1, 9)).must_sync


def test_soft_state_reports_leader_changes() -> None:
    node = RawNode.bootstrap(cfg(1), voters=[1])
    node.advance(node.ready())
    node.campaign()
    rd = node.ready()
    assert rd.soft_state is not None
    assert rd.soft_state.role == Role.LEADER
    assert rd.soft_state.leader == 1
    # The new leader's empty entry commits once it is on the leader's disk.
    assert rd.hard_state == HardState(term=2, vote=1, commit=1)
    node.advance(rd)
    assert node.ready().hard_state == HardState(term=2, vote=1, commit=2)


def test_committed_entries_are_always_handed_out_for_persistence_first() -> None:
    """Apply never runs ahead of the log: every committed entry was part of `entries`
    of the same or an earlier Ready (the harness asserts it on every Ready, too)."""
    node = RawNode.bootstrap(cfg(1), voters=[1])
    seen: set[int] = set()
    node.campaign()
    for k in range(5):
        node.propose(f"v{k}".encode())
        while node.has_ready():
            rd = node.ready()
            seen.update(e.index for e in rd.entries)
            assert all(e.index in seen for e in rd.committed_entries)
            node.advance(rd)
    assert node.applied == 7


def test_committed_entries_are_paced_by_max_committed_per_ready() -> None:
    node = RawNode.bootstrap(cfg(1, max_committed_per_ready=2), voters=[1])
    node.campaign()
    node.propose_batch([b"a", b"b", b"c"])
    sizes = []
    while node.has_ready():
        rd = node.ready()
        sizes.append(len(rd.committed_entries))
        node.advance(rd)
    # The bootstrap entry is committed by construction; the empty entry and the 3
    # proposals commit once persisted, then come out at most 2 per Ready.
    assert sizes == [1, 2, 2]


def test_has_ready_is_false_right_after_ready() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    n2 = net.nodes[2]
    n2.step(Message(MT.APP, to=2, sender=1, term=2, index=4, log_term=2, entries=(Entry(2, 5),)))
    n2.ready()
    assert not n2.has_ready()


def test_has_ready_is_false_right_after_ready_with_snapshot() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    n2 = net.nodes[2]
    meta = SnapshotMetadata(50, 2, conf([1, 2, 3]))
    n2.step(Message(MT.SNAP, to=2, sender=1, term=2, snapshot=Snapshot(meta, b"\x90")))
    rd = n2.ready()
    assert rd.snapshot is not None
    assert not n2.has_ready()


# --- restart ---------------------------------------------------------------------


def _log(n: int) -> list[Entry]:
    boot = RawNode.bootstrap(cfg(1), voters=[1, 2, 3]).ready().entries
    return [*boot, *(Entry(2, i, data=b"x") for i in range(4, n + 1))]


def test_restart_replays_committed_entries_and_keeps_term_and_vote() -> None:
    node = RawNode.restart(cfg(2), HardState(2, 1, 5), None, _log(6))
    assert (node.term, node.hard_state.vote, node.commit) == (2, 1, 5)
    rd = node.ready()
    assert rd.hard_state is None
    assert rd.entries == []
    assert [e.index for e in rd.committed_entries] == [1, 2, 3, 4, 5]
    assert node.conf_state == conf([1, 2, 3])
    assert node.role == Role.FOLLOWER
    assert node.leader == NONE


def test_restart_refuses_a_log_with_a_gap() -> None:
    log = _log(6)
    del log[3]
    with pytest.raises(StorageMismatch):
        RawNode.restart(cfg(1), HardState(2, 0, 3), None, log)


def test_restart_refuses_entries_not_following_the_snapshot() -> None:
    snap = Snapshot(SnapshotMetadata(5, 2, conf([1, 2, 3])))
    with pytest.raises(StorageMismatch):
        RawNode.restart(cfg(1), HardState(2, 0, 5), snap, [Entry(2, 7)])
    # Entries covered by the snapshot are skipped, not an error.
    node = RawNode.restart(cfg(1), HardState(2, 0, 5), snap, [*_log(6)])
    assert node.first_index == 6
    assert node.last_index == 6


def test_restart_refuses_commit_beyond_the_last_index() -> None:
    with pytest.raises(StorageMismatch) as exc:
        RawNode.restart(cfg(1), HardState(2, 0, 9), None, _log(6))
    assert exc.value.code == "storage_mismatch"


def test_restart_with_empty_snapshot_is_like_none() -> None:
    node = RawNode.restart(cfg(1), HardState(2, 0, 3), Snapshot(), _log(4))
    assert node.first_index == 1
    assert node.commit == 3


# --- garbage from the wire ----------------------------------------------------------


def _quiet_leader() -> Network:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    return net


def _snapshot_state(net: Network) -> tuple[object, ...]:
    n = net.nodes[1]
    st = n.status()
    return (n.hard_state, n.role, n.leader, n.last_index, st.progress, n.conf_state)


@pytest.mark.parametrize(
    "msg",
    [
        Message(MT.APP_RESP, to=1, sender=99, term=2, index=100),  # unknown sender
        Message(MT.HEARTBEAT_RESP, to=1, sender=99, term=2, context=b"r"),
        Message(MT.APP, to=7, sender=2, term=9, index=1),  # not for us
        Message(MT.HUP, to=1, sender=2),  # local types never come from the wire
        Message(MT.BEAT, to=1, sender=2),
        Message(MT.CHECK_QUORUM, to=1, sender=2),
        Message(MT.READ_INDEX_RESP, to=1, sender=2, term=2, index=99),  # not expected
        Message(MT.TIMEOUT_NOW, to=1, sender=2, term=2),  # a leader ignores it
        Message(MT.PRE_VOTE_RESP, to=1, sender=2, term=2),
    ],
    ids=lambda m: m.type.name,
)
def test_garbage_messages_are_ignored(msg: Message) -> None:
    net = _quiet_leader()
    before = _snapshot_state(net)
    net.nodes[msg.to if msg.to in net.nodes else 1].step(msg)
    net.stabilize()
    assert _snapshot_state(net) == before
    assert net.read_states[1] == []


def test_unreachable_and_snap_status_from_the_wire_are_ignored() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=0)
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.compact(1)
    net.heal()
    net.hold(MT.SNAP)
    net.tick()
    st = net.nodes[1].status()
    assert st.progress[2].state == ProgressState.REPLICATE
    assert st.progress[3].state == ProgressState.SNAPSHOT
    assert {MT.UNREACHABLE, MT.SNAP_STATUS} <= LOCAL_MESSAGES
    net.nodes[1].step(Message(MT.UNREACHABLE, to=1, sender=2))
    net.nodes[1].step(Message(MT.SNAP_STATUS, to=1, sender=3, reject=True))
    assert net.nodes[1].status().progress == st.progress


def test_termless_append_from_the_wire_is_ignored() -> None:
    net = _quiet_leader()
    n2 = net.nodes[2]
    last, commit = n2.last_index, n2.commit
    n2.step(
        Message(
            MT.APP,
            to=2,
            sender=99,
            term=0,
            index=last,
            log_term=2,
            entries=(Entry(2, last + 1, data=b"forged"),),
            commit=last + 1,
        )
    )
    net.stabilize()
    assert n2.commit == commit
    assert b"forged" not in net.data(2)


def test_termless_vote_request_does_not_raise() -> None:
    node = RawNode.join(cfg(5))
    node.step(Message(MT.VOTE, to=5, sender=1, term=0))
    node.step(Message(MT.PRE_VOTE, to=5, sender=1, term=0))


# --- proposals ----------------------------------------------------------------------


def test_proposal_without_leader_fails_with_no_leader() -> None:
    net = Network([1, 2, 3])
    with pytest.raises(NoLeader) as exc:
        net.nodes[1].propose(b"x")
    assert exc.value.code == "no_leader"
    net.isolate(1)
    net.campaign(1)
    assert net.nodes[1].role == Role.PRE_CANDIDATE
    with pytest.raises(NoLeader):
        net.nodes[1].propose(b"x")


def test_leader_removing_itself_refuses_proposals_with_not_a_member() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.hold(MT.APP_RESP)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 1))
    with pytest.raises(NotAMember) as exc:
        net.nodes[1].propose(b"x")
    assert exc.value.code == "not_a_member"
    net.nodes[2].propose(b"fwd")
    net.stabilize()
    assert net.dropped_proposals[2] == [b"fwd"]


def test_follower_forwards_proposals_to_the_leader() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.clear_log()
    net.nodes[3].propose_batch([b"a", b"b"])
    net.stabilize()
    fwd = net.msgs(MT.PROP_FORWARD, frm=3, to=1)
    assert len(fwd) == 1
    assert fwd[0].term == 0
    assert all(net.data(i) == [b"a", b"b"] for i in net.ids)
    assert net.dropped_proposals[3] == []


def test_refused_forward_shows_up_in_dropped_proposals() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    net.cut(1, 3)
    net.cut(2, 3)
    net.elect(2)  # with 1's vote; 3 hears nothing and still believes 1 leads
    net.heal()
    net.cut(2, 3)
    assert net.nodes[3].leader == 1
    assert net.nodes[1].role == Role.FOLLOWER
    net.nodes[3].propose(b"lost")
    net.stabilize()
    assert net.dropped_proposals[3] == [b"lost"]


def test_forward_to_a_candidate_is_refused() -> None:
    net = Network([1, 2, 3], pre_vote=False)
    for i in net.ids:
        net.isolate(i)
    net.campaign(2)
    net.heal()
    n2 = net.nodes[2]
    assert n2.role == Role.CANDIDATE
    n2.step(Message(MT.PROP_FORWARD, to=2, sender=3, entries=(Entry(0, 0, data=b"p"),)))
    net.process(2)
    back = [m for m in net.queue if m.type == MT.PROP_FORWARD]
    assert back
    assert back[0].reject
    assert back[0].to == 3


def test_leader_accepts_only_normal_entries_from_a_forward() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    bad = Entry(0, 0, EntryType.CONF_CHANGE, b"sneaky")
    net.nodes[1].step(
        Message(MT.PROP_FORWARD, to=1, sender=2, entries=(Entry(0, 0, data=b"ok"), bad))
    )
    net.stabilize()
    assert net.data(1) == [b"ok"]
    assert net.nodes[1].conf_state == conf([1, 2, 3])


# --- observation and configuration -------------------------------------------------


def test_status_reports_progress_only_on_the_leader() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    st = net.nodes[1].status()
    assert st.role == Role.LEADER
    assert st.leader == 1
    assert st.term == 2
    assert st.vote == 1
    assert set(st.progress) == {1, 2, 3}
    assert all(p.recent_active for p in st.progress.values())
    assert st.progress[2].match == 4
    assert st.progress[2].state == ProgressState.REPLICATE
    assert str(st.role) == "leader"
    assert str(st.progress[2].state) == "replicate"
    f = net.nodes[2].status()
    assert f.id == net.nodes[2].id == 2
    assert f.progress == {}
    assert f.leader == 1
    assert f.first_index == 1
    assert f.snapshot_index == 0
    net.isolate(3)
    net.tick(10)
    assert not net.nodes[1].status().progress[3].recent_active


@pytest.mark.parametrize(
    "bad",
    [
        {"id": 0},
        {"id": 1, "heartbeat_tick": 0},
        {"id": 1, "election_tick": 1, "heartbeat_tick": 1},
        {"id": 1, "max_inflight_msgs": 0},
    ],
)
def test_invalid_config_is_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RawNode.join(Config(**bad))  # type: ignore[arg-type]


def test_error_codes_are_distinct() -> None:
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, RaftError)]
    # Every refusal of the core lives in errors.py, these two included.
    assert StorageMismatch in classes
    assert UnsafeConfChange in classes
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))


def test_stable_index_moves_only_on_advance() -> None:
    """The node loop applies committed entries up to `stable_index` before the current
    Ready's fsync: it must name only what a previous advance() made durable."""
    net = Network([1, 2, 3])
    net.elect(1)
    n2 = net.nodes[2]
    assert n2.stable_index == n2.last_index == 4
    e = Entry(2, 5, data=b"a")
    n2.step(Message(MT.APP, to=2, sender=1, term=2, index=4, log_term=2, entries=(e,)))
    rd = n2.ready()
    assert rd.entries == [e]
    assert n2.stable_index == 4
    n2.advance(rd)
    assert n2.stable_index == 5


def test_4_1_pending_conf_index_blocks_a_second_change_until_committed() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    lead = net.nodes[1]
    assert net.nodes[2].pending_conf_index == 0  # only a leader knows
    # The leader's first entry of its term must commit before any change (Ongaro).
    assert 0 < lead.pending_conf_index <= lead.commit
    net.hold(MT.APP_RESP)
    lead.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3))
    assert lead.pending_conf_index == lead.last_index > lead.commit
    with pytest.raises(ConfChangeInProgress):
        lead.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 2))
    net.release()
    net.stabilize()
    assert lead.pending_conf_index <= lead.commit
