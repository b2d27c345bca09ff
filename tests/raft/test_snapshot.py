"""§7 log compaction and InstallSnapshot: the log stays bounded, a follower behind the
compaction point is sent a snapshot, and snapshots never run ahead of what was applied."""

from __future__ import annotations

import pytest

from raftkv.raft import (
    CompactionError,
    Entry,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from raftkv.raft.types import ProgressState

from .harness import Network, conf

MT = MessageType


def test_7_compaction_keeps_the_log_bounded() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=5)
    net.elect(1)
    for k in range(100):
        net.propose(1, f"v{k}".encode())
        if k % 20 == 19:
            for i in net.ids:
                net.compact(i)
    for i in net.ids:
        n = net.nodes[i]
        assert n.last_index - n.first_index + 1 <= 25
        assert n.first_index == n.snapshot.metadata.index - 5 + 1
        assert len(net.data(i)) == 100


def test_7_compaction_retains_catchup_entries_for_slightly_lagging_followers() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=50)
    net.elect(1)
    net.isolate(3)
    for k in range(20):
        net.propose(1, f"v{k}".encode())
    net.compact(1)
    net.heal()
    net.tick()
    assert net.count(MT.SNAP) == 0  # 3 catches up from the retained log
    assert net.data(3) == net.data(1)


def test_7_follower_behind_first_index_gets_snapshot_then_the_rest() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=0)
    net.elect(1)
    net.isolate(3)
    for k in range(30):
        net.propose(1, f"v{k}".encode())
    snap = net.compact(1)
    assert net.nodes[1].first_index == snap.metadata.index + 1
    for k in range(30, 35):
        net.propose(1, f"v{k}".encode())
    net.heal()
    net.clear_log()
    net.tick()
    snaps = net.msgs(MT.SNAP, to=3)
    assert len(snaps) == 1
    assert snaps[0].snapshot == snap
    assert net.storage[3].snapshot == snap
    assert [e.index for e in net.storage[3].entries] == list(
        range(snap.metadata.index + 1, net.nodes[1].last_index + 1)
    )
    assert net.data(3) == [f"v{k}".encode() for k in range(35)]
    assert net.nodes[3].conf_state == conf([1, 2, 3])
    assert net.nodes[1].status().progress[3].state == ProgressState.REPLICATE


def test_7_no_appends_while_a_snapshot_is_in_flight() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=0)
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.compact(1)
    net.heal()
    net.hold(MT.SNAP)
    net.tick()
    assert net.nodes[1].status().progress[3].state == ProgressState.SNAPSHOT
    net.clear_log()
    net.propose(1, b"y")
    net.tick(3)
    assert net.count(MT.APP, to=3, sent=True) == 0
    assert net.count(MT.SNAP, to=3, sent=True) == 0
    net.release()
    net.tick()
    assert net.data(3) == [b"x", b"y"]


def test_7_failed_snapshot_returns_follower_to_probing() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=0)
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.compact(1)
    net.heal()
    net.drop(MT.SNAP)
    net.tick()
    n1 = net.nodes[1]
    assert n1.status().progress[3].state == ProgressState.SNAPSHOT
    n1.report_snapshot(3, ok=False)
    pr = n1.status().progress[3]
    assert pr.state == ProgressState.PROBE
    assert pr.next == pr.match + 1
    n1.report_snapshot(3, ok=False)  # stale report: nothing to do
    net.heal()
    net.tick(2)  # the next heartbeat response triggers a new snapshot
    assert net.data(3) == [b"x"]


def test_7_successful_snapshot_report_probes_from_the_snapshot() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=0)
    net.elect(1)
    net.isolate(3)
    net.propose(1, b"x")
    snap = net.compact(1)
    net.heal()
    net.hold(MT.SNAP)
    net.tick()
    net.nodes[1].report_snapshot(3, ok=True)
    assert net.nodes[1].status().progress[3].next == snap.metadata.index + 1
    net.release()
    net.tick(2)
    assert net.data(3) == [b"x"]


def test_7_no_snapshot_is_sent_to_a_member_that_seems_down() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=0)
    net.elect(1)
    net.isolate(3)
    net.tick(20)
    net.propose(1, b"x")
    net.compact(1)
    net.nodes[1].report_unreachable(3)  # probe from 3's match, which is compacted
    net.clear_log()
    net.propose(1, b"y")
    assert net.count(MT.SNAP, sent=True) == 0
    net.heal()
    net.tick(2)
    assert net.count(MT.SNAP) == 1
    assert net.data(3) == [b"x", b"y"]


def test_7_snapshot_only_at_or_below_applied() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.hold(MT.APP_RESP)
    net.propose(1, b"x")
    n1 = net.nodes[1]
    assert n1.applied == 4
    assert n1.last_index == 5
    with pytest.raises(CompactionError):
        n1.compact(5, b"")
    n1.compact(4, b"")
    with pytest.raises(CompactionError):
        n1.compact(4, b"")  # not newer than the current snapshot
    with pytest.raises(CompactionError):
        n1.compact(3, b"")


def test_7_restart_from_snapshot_redelivers_exactly_the_committed_entries_after_it() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=2)
    net.elect(1)
    for k in range(10):
        net.propose(1, f"v{k}".encode())
    snap = net.compact(2)
    for k in range(10, 15):
        net.propose(1, f"v{k}".encode())
    before = list(net.data(2))
    commit = net.nodes[2].commit
    net.crash(2)
    node = net.restart(2)
    assert node.first_index == snap.metadata.index + 1
    replayed = [e.index for e in net.sm[2].applied]
    assert replayed == list(range(snap.metadata.index + 1, commit + 1))
    assert net.data(2) == before
    assert node.conf_state == conf([1, 2, 3])


def test_7_restart_from_snapshot_without_entries() -> None:
    net = Network([1, 2, 3], snapshot_catchup_entries=0)
    net.elect(1)
    net.propose(1, b"x")
    snap = net.compact(2)
    net.storage[2].entries = []
    net.crash(2)
    node = net.restart(2)
    assert node.last_index == node.commit == snap.metadata.index
    assert net.data(2) == [b"x"]
    net.propose(1, b"y")
    assert net.data(2) == [b"x", b"y"]


def _snap_msg(index: int, term: int, to: int = 2) -> Message:
    meta = SnapshotMetadata(index, term, conf([1, 2, 3]))
    return Message(MT.SNAP, to=to, sender=1, term=2, snapshot=Snapshot(meta, b"\x90"))


def test_7_stale_snapshot_is_ignored() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    n2 = net.nodes[2]
    before = list(net.storage[2].entries)
    n2.step(_snap_msg(3, 1))  # index <= commit
    rd = n2.ready()
    assert rd.snapshot is None
    assert [(m.type, m.index, m.reject) for m in rd.messages] == [(MT.APP_RESP, 5, False)]
    n2.advance(rd)
    assert net.storage[2].entries == before
    assert n2.first_index == 1


def test_7_snapshot_of_entries_we_already_hold_only_advances_commit() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.hold(MT.APP, to=2, where=lambda m: not m.entries)  # the commit never reaches 2
    net.propose(1, b"x")
    n2 = net.nodes[2]
    assert n2.commit == 4
    assert n2.last_index == 5
    n2.step(_snap_msg(5, 2))
    rd = n2.ready()
    assert rd.snapshot is None
    assert n2.commit == 5
    assert [e.index for e in rd.committed_entries] == [5]


def test_7_empty_snapshot_message_is_ignored() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    n2 = net.nodes[2]
    n2.step(Message(MT.SNAP, to=2, sender=1, term=2))
    n2.step(Message(MT.SNAP, to=2, sender=1, term=2, snapshot=Snapshot()))
    net.process(2)
    assert not [m for m in net.queue if m.to == 1 and m.type == MT.APP_RESP]


def test_7_entries_after_a_snapshot_arrive_before_it_is_persisted() -> None:
    """Ready contract: a snapshot and the entries after it may arrive in one batch; the
    snapshot comes out first and nothing is applied until it is installed."""
    net = Network([1, 2, 3])
    net.elect(1)
    n2 = net.nodes[2]
    n2.step(_snap_msg(10, 2))
    n2.step(
        Message(
            MT.APP,
            to=2,
            sender=1,
            term=2,
            index=10,
            log_term=2,
            entries=(Entry(2, 11, data=b"a"), Entry(2, 12, data=b"b")),
            commit=12,
        )
    )
    rd = n2.ready()
    assert rd.snapshot is not None
    assert rd.snapshot.metadata.index == 10
    assert [e.index for e in rd.entries] == [11, 12]
    assert rd.committed_entries == []
    assert rd.hard_state is not None
    assert rd.hard_state.commit == 12
    net.handle_ready(2, rd)
    rd = n2.ready()
    assert [e.index for e in rd.committed_entries] == [11, 12]
    net.handle_ready(2, rd)
    assert net.data(2) == [b"a", b"b"]


def test_7_newer_snapshot_supersedes_one_not_yet_persisted() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    n2 = net.nodes[2]
    n2.step(_snap_msg(10, 2))
    rd1 = n2.ready()
    n2.step(_snap_msg(20, 2))
    n2.advance(rd1)  # the old one was persisted meanwhile: it no longer counts
    rd2 = n2.ready()
    assert rd2.snapshot is not None
    assert rd2.snapshot.metadata.index == 20
    n2.advance(rd2)
    assert n2.applied == 20
    assert not n2.has_ready()
