"""Leadership transfer (thesis §3.10): the leader brings the target up to date, then
tells it to campaign at once with TimeoutNow; proposals pause meanwhile, and a transfer
that does not finish within an election timeout is abandoned.

More scenarios are interactions in testdata/leader_transfer_3_10*.txt (see
test_interaction.py)."""

from __future__ import annotations

import pytest

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    InvalidConfChange,
    MessageType,
    NotLeader,
    TransferInProgress,
)

from .harness import Network

MT = MessageType


def test_3_10_proposals_during_transfer_fail_fast() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.hold(MT.TIMEOUT_NOW)
    net.nodes[1].transfer_leader(2)
    net.stabilize()
    with pytest.raises(TransferInProgress):
        net.nodes[1].propose(b"x")
    # A forwarded proposal is refused back to its member, which fails it at once.
    net.nodes[3].propose(b"fwd")
    net.stabilize()
    assert net.dropped_proposals[3] == [b"fwd"]
    net.release()
    assert net.leader() == 2


def test_3_10_transfer_that_cannot_complete_is_abandoned_after_election_timeout() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.drop(MT.TIMEOUT_NOW)
    net.nodes[1].transfer_leader(2)
    net.stabilize()
    assert net.nodes[1].status().lead_transferee == 2
    net.tick(9)
    assert net.nodes[1].status().lead_transferee == 2
    net.tick()
    assert net.nodes[1].status().lead_transferee == 0
    assert net.leader() == 1
    net.propose(1, b"x")  # proposals flow again
    assert net.data(2) == [b"x"]


def test_3_10_transfer_abandoned_even_without_check_quorum() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    net.isolate(2)
    net.nodes[1].transfer_leader(2)
    net.tick(10)
    assert net.nodes[1].status().lead_transferee == 0


def test_3_10_transfer_to_learner_or_non_member_is_refused() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.add_joining(4)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.stabilize()
    with pytest.raises(InvalidConfChange):
        net.nodes[1].transfer_leader(4)
    with pytest.raises(InvalidConfChange):
        net.nodes[1].transfer_leader(9)
    assert net.nodes[1].status().lead_transferee == 0


def test_3_10_transfer_to_self_is_a_no_op_and_followers_cannot_transfer() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.nodes[1].transfer_leader(1)
    assert net.nodes[1].status().lead_transferee == 0
    with pytest.raises(NotLeader):
        net.nodes[2].transfer_leader(3)


def test_3_10_repeated_transfer_request_is_idempotent() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.hold(MT.APP, to=3)
    net.propose(1, b"x")
    net.clear_log()
    net.nodes[1].transfer_leader(3)
    net.nodes[1].transfer_leader(3)
    net.stabilize()
    assert net.count(MT.APP, to=3, sent=True) <= 1
    net.release()
    assert net.leader() == 3


def test_3_10_removing_the_transfer_target_cancels_the_transfer() -> None:
    net = Network([1, 2, 3, 4])
    net.elect(1)
    net.drop(MT.TIMEOUT_NOW)
    net.hold(MT.APP_RESP)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 4))
    net.stabilize()
    net.nodes[1].transfer_leader(4)  # 4 is still a voter until the removal commits
    assert net.nodes[1].status().lead_transferee == 4
    net.release()
    assert net.nodes[1].conf_state.voters == (1, 2, 3)
    assert net.nodes[1].status().lead_transferee == 0
    net.propose(1, b"x")
