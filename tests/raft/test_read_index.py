"""Linearizable reads with ReadIndex (thesis §6.4): a read is served at the commit index
the leader had when it arrived, and only after a heartbeat quorum confirmed that it was
still the leader at that moment.

More scenarios are interactions in testdata/read_index_6_4*.txt (see
test_interaction.py)."""

from __future__ import annotations

import pytest

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    NoLeader,
    RawNode,
    ReadState,
    Role,
    encode_conf_change,
)

from .harness import Network

MT = MessageType


def test_6_4_one_ack_of_five_is_not_a_quorum() -> None:
    net = Network([1, 2, 3, 4, 5])
    net.elect(1)
    net.hold(MT.HEARTBEAT, to=3)
    net.hold(MT.HEARTBEAT, to=4)
    net.hold(MT.HEARTBEAT, to=5)
    net.nodes[1].read_index(b"r")
    net.stabilize()
    assert net.read_states[1] == []  # 1 and 2 are two of five
    net.release()
    assert net.read_states[1] == [ReadState(6, b"r")]


def test_6_4_a_later_ack_confirms_earlier_reads() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.hold(MT.HEARTBEAT, where=lambda m: m.context == b"a")
    net.nodes[1].read_index(b"a")
    net.nodes[1].read_index(b"b")
    net.nodes[1].read_index(b"b")  # a duplicate context is one request
    net.stabilize()
    assert net.read_states[1] == [ReadState(4, b"a"), ReadState(4, b"b")]
    net.release()
    assert len(net.read_states[1]) == 2


def test_6_4_follower_forwards_and_gets_the_leader_commit_index() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.nodes[2].read_index(b"f")
    net.stabilize()
    assert net.count(MT.READ_INDEX, frm=2, to=1) == 1
    assert net.read_states[2] == [ReadState(net.nodes[1].commit, b"f")]
    assert net.read_states[1] == []


def test_6_4_follower_without_leader_refuses_reads() -> None:
    net = Network([1, 2, 3])
    with pytest.raises(NoLeader):
        net.nodes[2].read_index(b"r")


def test_6_4_new_leader_defers_reads_until_it_commits_an_entry_of_its_term() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    net.propose(1, b"x")
    net.hold(MT.APP, frm=2)
    net.campaign(2)
    n2 = net.nodes[2]
    assert n2.role == Role.LEADER
    assert n2.commit == 5
    assert n2.last_index == 6
    net.tick(ids=[2])  # its heartbeats tell 3 who leads; the appends stay held
    net.clear_log()
    n2.read_index(b"local")
    net.nodes[3].read_index(b"remote")
    net.stabilize()
    # Its commit index (5) may be stale until its own empty entry (6) commits.
    assert net.read_states[2] == []
    assert net.read_states[3] == []
    assert not [m for m in net.sent if m.type == MT.HEARTBEAT and m.context]
    net.release()
    assert net.read_states[2] == [ReadState(6, b"local")]
    assert net.read_states[3] == [ReadState(6, b"remote")]


def test_6_4_single_member_cluster_answers_at_once() -> None:
    net = Network([1])
    net.campaign(1)
    net.propose(1, b"x")
    net.clear_log()
    net.nodes[1].read_index(b"r")
    net.stabilize()
    assert net.read_states[1] == [ReadState(3, b"r")]
    assert net.sent == []


def test_6_4_single_voter_leader_answers_learner_reads_at_once() -> None:
    net = Network([1])
    net.campaign(1)
    net.add_joining(2)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 2))
    net.stabilize()
    net.nodes[2].read_index(b"r")
    net.stabilize()
    assert net.read_states[2] == [ReadState(net.nodes[1].commit, b"r")]


def test_6_4_deposed_leader_does_not_answer() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    net.hold(MT.HEARTBEAT_RESP)
    net.nodes[1].read_index(b"r")
    net.stabilize()
    net.elect(2)
    assert net.nodes[1].role == Role.FOLLOWER
    net.release()  # the old term's acks arrive late
    net.tick(3)
    assert net.read_states[1] == []


def test_6_4_candidate_ignores_forwarded_reads() -> None:
    net = Network([1, 2, 3], pre_vote=False)
    for i in net.ids:
        net.isolate(i)
    net.campaign(2)
    assert net.nodes[2].role == Role.CANDIDATE
    net.heal()
    net.nodes[2].step(Message(MT.READ_INDEX, to=2, sender=3, context=b"r"))
    net.process(2)
    assert not [m for m in net.queue if m.type == MT.READ_INDEX_RESP]


def test_6_4_a_lone_voter_waits_for_its_term_entry_after_losing_its_commit_index() -> None:
    """The commit index is written without an fsync when nothing else changed, so a
    single-voter member may restart with commit 1 although 3 was committed (and read).
    Answering a read at 1 would be stale; it must wait for its new term's entry."""
    boot = Entry(
        1, 1, EntryType.CONF_CHANGE, encode_conf_change(ConfChange(ConfChangeType.ADD_NODE, 1))
    )
    log = [boot, Entry(1, 2, data=b"a"), Entry(1, 3, data=b"b")]
    node = RawNode.restart(Config(id=1, seed=1), HardState(1, 1, 1), None, log)
    node.campaign()
    assert node.role == Role.LEADER
    node.read_index(b"r")
    rd = node.ready()
    assert rd.read_states == []  # not yet: commit is still the stale 1
    node.advance(rd)
    states = []
    while node.has_ready():
        rd = node.ready()
        states += rd.read_states
        node.advance(rd)
    assert states == [ReadState(4, b"r")]
