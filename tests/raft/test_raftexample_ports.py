"""Ports of etcd's contrib/raftexample tests (raftexample_test.go) that make sense at the
level of the core: the application loop of raftexample is the harness's Ready loop."""

from __future__ import annotations

import pytest

from raftkv.raft import CompactionError, ConfChange, ConfChangeType, EntryType, MessageType

from .harness import Network, conf

MT = MessageType


def test_propose_on_commit() -> None:
    """TestProposeOnCommit: every member re-proposes whenever it applies something;
    all members commit the same sequence."""
    rounds = 40
    net = Network([1, 2, 3])
    net.tick_until(lambda: bool(net.leaders()))
    seen = {i: 0 for i in net.ids}
    sent = {i: 0 for i in net.ids}
    for i in net.ids:
        net.nodes[i].propose(f"{i}:0".encode())
        sent[i] = 1
    net.stabilize()
    for _ in range(10_000):
        moved = False
        for i in net.ids:
            new = net.data(i)[seen[i] :]
            seen[i] += len(new)
            for _ in new:
                if sent[i] < rounds:
                    net.nodes[i].propose(f"{i}:{sent[i]}".encode())
                    sent[i] += 1
                    moved = True
        net.stabilize()
        if not moved:
            if all(s == rounds for s in sent.values()) and len(net.data(1)) == 3 * rounds:
                break
            net.tick()
    log = net.data(1)
    assert len(log) == 3 * rounds
    assert net.data(2) == log
    assert net.data(3) == log
    for i in net.ids:
        mine = [x for x in log if x.startswith(f"{i}:".encode())]
        assert mine == [f"{i}:{k}".encode() for k in range(rounds)]


def test_put_and_get_on_a_single_member() -> None:
    """TestPutAndGetKeyValue: a one-member cluster commits and applies by itself."""
    net = Network([1])
    net.tick_until(lambda: bool(net.leaders()))
    net.propose(1, b"foo=bar")
    assert net.data(1) == [b"foo=bar"]


def test_add_new_node() -> None:
    """TestAddNewNode: a member added to a running cluster receives and applies."""
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"before")
    net.add_joining(4)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, 4, b"http://m4"))
    net.stabilize()
    net.propose(4, b"via-4")  # forwarded by the new member
    assert net.data(4) == [b"before", b"via-4"]
    added = [e for e in net.sm[4].applied if e.index > 4 and e.type == EntryType.CONF_CHANGE]
    assert len(added) == 1


def test_snapshot_only_after_the_entries_it_covers_are_applied() -> None:
    """raftexample's maybeTriggerSnapshot: snapshot at appliedIndex every snapCount
    entries; the core refuses a snapshot beyond what the application applied."""
    snap_count = 10
    net = Network([1, 2, 3], snapshot_catchup_entries=3)
    net.elect(1)
    net.hold(MT.APP_RESP, frm=3)
    last_snap = 0
    for k in range(35):
        net.propose(1, f"v{k}".encode())
        for i in net.ids:
            applied = net.sm[i].applied_index
            assert net.nodes[i].applied == applied  # the core agrees after advance
            if i == 1 and applied - last_snap >= snap_count:
                with pytest.raises(CompactionError):
                    net.nodes[i].compact(net.nodes[i].commit + 1, b"")
                snap = net.compact(i)
                assert snap.metadata.index == applied
                last_snap = applied
    # A member restarted from the snapshot rebuilds exactly the applied state.
    before = list(net.data(1))
    net.crash(1)
    net.restart(1)
    assert net.data(1) == before


def test_snapshot_carries_the_current_membership() -> None:
    """raftexample passes its confState to CreateSnapshot; here the core records it, and
    a member restored from the snapshot learns the membership from it."""
    net = Network([1, 2, 3], snapshot_catchup_entries=0)
    net.elect(1)
    net.add_joining(4)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.stabilize()
    net.isolate(3)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 2))
    net.stabilize()
    assert net.nodes[1].conf_state == conf([1, 3], [4])
    net.heal()
    net.isolate(3)
    net.propose(1, b"x")  # 2 is gone; the quorum of {1, 3} needs 3
    net.heal()
    net.tick()
    snap = net.compact(1)
    assert snap.metadata.conf_state == conf([1, 3], [4])
    net.add_joining(5)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 5))
    net.stabilize()
    # 5 joined after the compaction: it learns everything from the snapshot.
    assert net.count(MT.SNAP, to=5) == 1
    assert net.nodes[5].conf_state == conf([1, 3], [4, 5])
    assert net.data(5) == [b"x"]
