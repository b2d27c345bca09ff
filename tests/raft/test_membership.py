"""Single-server membership changes (thesis §4.1-§4.2): one change at a time, only after
the leader committed an entry of its term, learners that replicate without voting, and
the safety checks a leader applies before it proposes a change."""

from __future__ import annotations

import pytest

from raftkv.raft import (
    ConfChange,
    ConfChangeInProgress,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    InvalidConfChange,
    MessageType,
    NotAMember,
    NotLeader,
    RawNode,
    Role,
    UnsafeConfChange,
    decode_conf_change,
    encode_conf_change,
)
from raftkv.raft.confchange import apply_conf_change

from .harness import Network, conf

MT = MessageType
ADD = ConfChangeType.ADD_NODE
LEARNER = ConfChangeType.ADD_LEARNER
REMOVE = ConfChangeType.REMOVE_NODE


def change(net: Network, leader: int, kind: ConfChangeType, node: int) -> None:
    net.nodes[leader].propose_conf_change(ConfChange(kind, node, f"ctx{node}".encode()))
    net.stabilize()


def cluster_with_learner() -> Network:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"before")
    net.add_joining(4)
    change(net, 1, LEARNER, 4)
    return net


def test_4_1_add_voter() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.add_joining(4)
    change(net, 1, ADD, 4)
    for i in (1, 2, 3, 4):
        assert net.nodes[i].conf_state == conf([1, 2, 3, 4])
    assert net.data(4) == [b"x"]  # the new member got the whole log
    # Quorum is now 3 of 4: with two members down nothing commits.
    net.isolate(3)
    net.isolate(4)
    net.propose(1, b"y")
    assert net.data(1) == [b"x"]


def test_4_2_1_learner_replicates_but_never_counts_for_commit() -> None:
    net = cluster_with_learner()
    assert net.nodes[4].conf_state == conf([1, 2, 3], [4])
    assert net.data(4) == [b"before"]
    net.isolate(2)
    net.isolate(3)
    net.propose(1, b"x")
    # 1 and 4 hold it - two of four members - but only one of three voters.
    assert net.storage[4].entries[-1].data == b"x"
    assert net.nodes[1].commit < net.nodes[1].last_index
    assert net.data(1) == [b"before"]
    assert net.data(4) == [b"before"]
    net.heal()
    net.tick()
    assert net.data(4) == [b"before", b"x"]
    status = net.nodes[1].status()
    assert status.progress[4].learner
    assert not status.progress[2].learner


def test_4_2_1_promote_caught_up_learner() -> None:
    net = cluster_with_learner()
    change(net, 1, ADD, 4)
    assert net.nodes[1].conf_state == conf([1, 2, 3, 4])
    assert net.nodes[4].conf_state == conf([1, 2, 3, 4])
    assert not net.nodes[1].status().progress[4].learner


def test_4_2_1_promotion_of_lagging_learner_is_refused() -> None:
    net = Network([1, 2, 3], max_promote_lag=5)
    net.elect(1)
    net.add_joining(4)
    change(net, 1, LEARNER, 4)
    net.drop(to=4)
    net.nodes[1].propose_batch([b"x"] * 10)
    net.stabilize()
    with pytest.raises(UnsafeConfChange):
        net.nodes[1].propose_conf_change(ConfChange(ADD, 4))
    net.heal()
    net.tick()
    change(net, 1, ADD, 4)
    assert net.nodes[1].conf_state.voters == (1, 2, 3, 4)


def test_4_2_1_promotion_of_unreachable_learner_is_refused() -> None:
    net = cluster_with_learner()
    net.isolate(4)
    net.tick(10)
    with pytest.raises(UnsafeConfChange):
        net.nodes[1].propose_conf_change(ConfChange(ADD, 4))


def test_4_1_remove_member() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    change(net, 1, REMOVE, 3)
    assert net.nodes[1].conf_state == conf([1, 2])
    assert net.nodes[2].conf_state == conf([1, 2])
    assert 3 not in net.nodes[1].status().progress
    net.clear_log()
    net.propose(1, b"x")  # quorum 2 of 2
    assert net.data(2) == [b"x"]
    assert net.count(MT.APP, to=3) == 0


def test_4_1_remove_learner() -> None:
    net = cluster_with_learner()
    change(net, 1, REMOVE, 4)
    assert net.nodes[1].conf_state == conf([1, 2, 3])


def test_4_1_removing_a_lagging_voter_lets_the_smaller_quorum_commit() -> None:
    net = Network([1, 2, 3, 4])
    net.elect(1)
    net.isolate(4)
    net.hold(MT.APP_RESP, frm=3, where=lambda m: m.index == 6)
    net.drop(MT.APP_RESP, frm=3, where=lambda m: m.index > 6)
    change(net, 1, REMOVE, 4)  # index 6
    net.propose(1, b"x")  # index 7: on 1 and 2 only, as far as 1 knows
    assert net.nodes[1].commit == 5  # quorum is 3 of 4
    net.release()
    # 6 commits with 3's ack; in {1, 2, 3} the entry 7 on 1 and 2 is a quorum.
    assert net.nodes[1].conf_state == conf([1, 2, 3])
    assert net.nodes[1].commit == 7
    assert net.data(2) == [b"x"]


def test_4_1_one_change_at_a_time() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.hold(MT.APP_RESP)
    net.add_joining(4)
    change(net, 1, LEARNER, 4)
    with pytest.raises(ConfChangeInProgress):
        net.nodes[1].propose_conf_change(ConfChange(REMOVE, 3))
    net.release()
    change(net, 1, REMOVE, 3)
    assert net.nodes[1].conf_state == conf([1, 2], [4])


def test_4_1_new_leader_changes_membership_only_after_committing_in_its_term() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    net.hold(MT.APP, frm=2)
    net.campaign(2)
    assert net.nodes[2].role == Role.LEADER
    # Ongaro's fix for single-server changes across leader changes.
    with pytest.raises(ConfChangeInProgress):
        net.nodes[2].propose_conf_change(ConfChange(REMOVE, 3))
    net.release()
    change(net, 2, REMOVE, 3)
    assert net.nodes[2].conf_state == conf([1, 2])


def test_4_2_2_leader_removing_itself_steps_down_and_hands_over() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    net.hold(MT.APP_RESP)
    change(net, 1, REMOVE, 1)
    # Until the removal commits, it still leads but refuses new writes.
    assert net.nodes[1].role == Role.LEADER
    with pytest.raises(NotAMember):
        net.nodes[1].propose(b"y")
    net.clear_log()
    net.release()
    assert net.nodes[1].status().role == Role.FOLLOWER
    assert net.count(MT.TIMEOUT_NOW, frm=1) == 1
    new = net.leader()
    assert new in (2, 3)
    assert net.nodes[new].conf_state == conf([2, 3])
    net.propose(new, b"z")
    assert net.data(2) == net.data(3) == [b"x", b"z"]
    # The removed member never campaigns again.
    net.isolate(1)
    net.tick(50, ids=[1])
    assert net.nodes[1].status().role == Role.FOLLOWER


def test_4_1_strict_reconfiguration_refuses_changes_that_lose_quorum() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    net.tick(10)
    assert net.leader() == 1
    # Removing 2 leaves {1, 3} with 3 unreachable: no quorum.
    with pytest.raises(UnsafeConfChange):
        net.nodes[1].propose_conf_change(ConfChange(REMOVE, 2))
    # Adding a voter makes the quorum 3 of 4 with only 2 reachable.
    with pytest.raises(UnsafeConfChange):
        net.nodes[1].propose_conf_change(ConfChange(ADD, 4))
    # Removing the unreachable member itself is fine.
    change(net, 1, REMOVE, 3)
    assert net.nodes[1].conf_state == conf([1, 2])


@pytest.mark.parametrize(
    ("kind", "node"),
    [
        (ADD, 2),  # already a voter
        (LEARNER, 2),  # demotion is unsupported
        (LEARNER, 4),  # already a learner
        (REMOVE, 9),  # unknown
        (ADD, 0),  # ids are positive
    ],
)
def test_invalid_conf_changes_are_refused(kind: ConfChangeType, node: int) -> None:
    net = cluster_with_learner()
    before = net.nodes[1].last_index
    with pytest.raises(InvalidConfChange) as exc:
        net.nodes[1].propose_conf_change(ConfChange(kind, node))
    assert not isinstance(exc.value, UnsafeConfChange)
    assert net.nodes[1].last_index == before


def test_removing_the_last_voter_is_refused() -> None:
    net = Network([1])
    net.campaign(1)
    with pytest.raises(InvalidConfChange):
        net.nodes[1].propose_conf_change(ConfChange(REMOVE, 1))


def test_conf_change_through_a_follower_is_refused() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    with pytest.raises(NotLeader):
        net.nodes[2].propose_conf_change(ConfChange(REMOVE, 3))


def test_membership_survives_restart() -> None:
    net = cluster_with_learner()
    change(net, 1, REMOVE, 3)
    for i in (1, 2, 4):
        net.crash(i)
        node = net.restart(i)
        # Replayed from the committed conf change entries in the log.
        assert node.conf_state == conf([1, 2], [4])
    net.tick_until(lambda: bool(net.leaders()))
    assert net.nodes[net.leader()].conf_state == conf([1, 2], [4])


def test_uncommitted_membership_change_is_not_in_effect_after_restart() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.drop(MT.APP)
    change(net, 1, REMOVE, 3)
    assert net.nodes[1].conf_state == conf([1, 2, 3])  # takes effect at commit
    net.crash(1)
    assert net.restart(1).conf_state == conf([1, 2, 3])


def test_snapshot_records_membership_as_of_its_index() -> None:
    net = Network([1, 2, 3])
    net.elect(1)  # 1..3 bootstrap, 4 empty
    net.add_joining(4)
    change(net, 1, LEARNER, 4)  # 5
    net.propose(1, b"x")  # 6
    change(net, 1, REMOVE, 3)  # 7
    net.propose(1, b"y")  # 8
    n1 = net.nodes[1]
    assert n1.raft.conf_state_at(4) == conf([1, 2, 3])
    expect = {
        4: conf([1, 2, 3]),
        5: conf([1, 2, 3], [4]),
        6: conf([1, 2, 3], [4]),
        7: conf([1, 2], [4]),
        8: conf([1, 2], [4]),
    }
    for index, cs in expect.items():
        snap = n1.compact(index, b"")
        assert snap.metadata.conf_state == cs, index
        assert snap.metadata.index == index
        assert snap.metadata.term == 2


def test_conf_change_codec_round_trips_and_rejects_garbage() -> None:
    cc = ConfChange(LEARNER, 7, b"http://m7:2380")
    assert decode_conf_change(encode_conf_change(cc)) == cc
    for junk in (b"", b"\xc1", encode_conf_change(cc)[:-3]):
        with pytest.raises(InvalidConfChange):
            decode_conf_change(junk)


def test_apply_conf_change_is_idempotent() -> None:
    """Committed entries are re-applied after a restart; applying twice is harmless."""
    cs = ConfState((1, 2), (3,))
    for cc in (ConfChange(ADD, 3), ConfChange(LEARNER, 4), ConfChange(REMOVE, 2)):
        once = apply_conf_change(cs, cc)
        assert apply_conf_change(once, cc) == once
    assert apply_conf_change(cs, ConfChange(LEARNER, 1)) == cs  # no demotion


def test_restart_tolerates_redundant_and_undecodable_conf_entries() -> None:
    add = [
        Entry(1, i, EntryType.CONF_CHANGE, encode_conf_change(ConfChange(ADD, i))) for i in (1, 2)
    ]
    log = [
        *add,
        Entry(1, 3, EntryType.CONF_CHANGE, encode_conf_change(ConfChange(ADD, 2))),
        Entry(1, 4, EntryType.CONF_CHANGE, b"\xc1garbage"),
    ]
    node = RawNode.restart(Config(id=1, seed=1), HardState(1, 0, 4), None, log)
    assert node.conf_state == conf([1, 2])
