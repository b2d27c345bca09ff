"""§5.2 leader election, §5.1 terms, §5.4.1 the election restriction, and the thesis'
PreVote (§9.6) and CheckQuorum (§6.2) extensions.

More scenarios are interactions in testdata/: election_5_2*.txt and
election_restriction_5_4_1*.txt (see test_interaction.py)."""

from __future__ import annotations

import pytest

from raftkv.raft import ConfChange, ConfChangeType, Message, MessageType, Role

from .harness import Network

MT = MessageType


@pytest.mark.parametrize("size", [3, 5])
def test_5_2_exactly_one_leader_is_elected(size: int) -> None:
    net = Network(range(1, size + 1))
    net.tick_until(lambda: bool(net.leaders()))
    lead = net.leader()
    terms = {n.term for n in net.nodes.values()}
    assert len(terms) == 1
    assert all(n.leader == lead for n in net.nodes.values())
    # Entries committed by the new leader reach everyone.
    net.propose(lead, b"x")
    assert all(net.data(i) == [b"x"] for i in net.ids)


@pytest.mark.parametrize("seed", range(12))
def test_5_2_follower_times_out_within_randomized_election_timeout(seed: int) -> None:
    net = Network([1, 2, 3], seed=seed)
    for i in net.ids:
        net.isolate(i)
    k = 0
    while net.nodes[1].role == Role.FOLLOWER:
        net.tick(ids=[1])
        k += 1
        assert k < 100
    # §5.2: timeouts are drawn from [election_tick, 2 * election_tick).
    assert 10 <= k < 20
    assert net.nodes[1].role == Role.PRE_CANDIDATE


def test_5_2_election_timeouts_are_randomized_across_members() -> None:
    timeouts = set()
    for i in (1, 2, 3, 4, 5):
        net = Network([1, 2, 3, 4, 5])
        net.isolate(i)
        for k in range(1, 100):
            net.tick(ids=[i])
            if net.nodes[i].role != Role.FOLLOWER:
                timeouts.add(k)
                break
    assert len(timeouts) > 1, "members with identical timeouts split votes forever"


@pytest.mark.parametrize("pre_vote", [True, False])
def test_5_2_members_sharing_a_seed_still_elect_a_leader(pre_vote: bool) -> None:
    net = Network([1, 2, 3], shared_seed=True, seed=42, pre_vote=pre_vote)
    net.tick_until(lambda: bool(net.leaders()), limit=1000)


def test_5_2_split_vote_is_resolved_by_a_later_election() -> None:
    net = Network([1, 2, 3, 4], pre_vote=False)
    # 1 and 3 campaign at once and each gets one other vote: no majority of 4.
    net.cut(1, 4)
    net.cut(3, 2)
    net.cut(1, 3)
    net.nodes[1].campaign()
    net.nodes[3].campaign()
    net.stabilize()
    assert not net.leaders()
    net.heal()
    net.tick_until(lambda: bool(net.leaders()))
    assert net.nodes[net.leader()].term >= 3


def test_5_1_leader_steps_down_on_higher_term() -> None:
    net = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    net.elect(1)
    net.isolate(1)
    net.elect(2)
    assert net.nodes[2].term == 3
    assert net.nodes[1].role == Role.LEADER  # stale, it does not know yet
    net.heal()
    net.tick()
    assert net.nodes[1].status().role == Role.FOLLOWER
    assert net.nodes[1].term == 3
    assert net.nodes[1].leader == 2


def test_5_1_stale_leader_learns_new_term_from_response_to_its_heartbeat() -> None:
    # With PreVote/CheckQuorum, a member with a higher term answers a stale leader's
    # heartbeat so that the stale leader steps down instead of staying isolated.
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    net.isolate(1)
    net.elect(2)
    net.heal()
    net.clear_log()
    net.hold(MT.HEARTBEAT, frm=2)  # only the stale leader talks
    net.tick(ids=[1])
    stale = [m for m in net.delivered if m.type == MT.APP_RESP and m.to == 1]
    assert stale
    assert stale[0].term == 3
    assert net.nodes[1].role == Role.FOLLOWER
    assert net.nodes[1].term == 3


def test_5_1_messages_from_older_terms_are_ignored() -> None:
    net = Network([1, 2, 3], check_quorum=False, pre_vote=False)
    net.elect(1)
    net.elect(2)
    before = net.nodes[3].hard_state
    net.nodes[3].step(Message(MT.VOTE, to=3, sender=1, term=2, index=100, log_term=2))
    net.nodes[3].step(Message(MT.VOTE_RESP, to=3, sender=1, term=1))
    net.stabilize()
    assert net.nodes[3].hard_state == before
    assert net.nodes[3].leader == 2


def _vote(to: int, frm: int, term: int, index: int = 3, log_term: int = 1) -> Message:
    return Message(MT.VOTE, to=to, sender=frm, term=term, index=index, log_term=log_term)


def _vote_answer(net: Network, i: int) -> Message:
    net.process(i)
    answer = net.queue.pop()
    assert answer.type == MT.VOTE_RESP
    return answer


def test_5_2_at_most_one_vote_per_term() -> None:
    net = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    n3 = net.nodes[3]
    n3.step(_vote(3, 1, term=2))
    assert not _vote_answer(net, 3).reject
    n3.step(_vote(3, 2, term=2))
    assert _vote_answer(net, 3).reject
    # Asking again for the same candidate is answered the same way (retransmission).
    n3.step(_vote(3, 1, term=2))
    assert not _vote_answer(net, 3).reject


def test_5_2_vote_survives_restart() -> None:
    net = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    net.nodes[3].step(_vote(3, 1, term=2))
    assert not _vote_answer(net, 3).reject
    # The vote was in the Ready's hard state, persisted before the answer left.
    assert net.storage[3].hard_state.vote == 1
    net.crash(3)
    n3 = net.restart(3)
    assert n3.hard_state.term == 2
    assert n3.hard_state.vote == 1
    n3.step(_vote(3, 2, term=2))
    assert _vote_answer(net, 3).reject


def test_prevote_partitioned_member_does_not_disrupt_on_rejoin() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    term = net.nodes[1].term
    net.isolate(3)
    net.tick(100)
    # Pre-candidates never bump their term, however often they retry.
    assert net.nodes[3].term == term
    assert net.nodes[3].role == Role.PRE_CANDIDATE
    net.heal()
    net.tick(3)
    assert net.leader() == 1
    assert all(n.term == term for n in net.nodes.values())
    assert net.nodes[3].leader == 1


def test_without_prevote_a_rejoining_member_disrupts_the_leader() -> None:
    """The contrast that motivates PreVote: the same scenario bumps the term."""
    net = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    net.elect(1)
    net.isolate(3)
    net.tick(100)
    assert net.nodes[3].term > 3
    net.heal()
    net.tick(50)
    assert net.nodes[net.leader()].term > 2


def test_prevote_is_answered_in_the_future_term_without_changing_ours() -> None:
    net = Network([1, 2, 3])
    for i in net.ids:
        net.isolate(i)
    net.nodes[1].campaign()
    net.process(1)
    pre = [m for m in net.queue if m.type == MT.PRE_VOTE]
    assert {m.to for m in pre} == {2, 3}
    assert all(m.term == 2 for m in pre)
    assert net.nodes[1].term == 1
    net.heal()
    net.stabilize()
    assert net.nodes[1].role == Role.LEADER
    assert net.nodes[1].term == 2


def test_prevote_rejected_with_higher_term_makes_precandidate_follow() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    net.isolate(3)
    net.elect(2)  # term 3, while 3 still believes in term 2
    net.heal()
    net.clear_log()
    net.campaign(3)
    rejects = [m for m in net.delivered if m.type == MT.PRE_VOTE_RESP and m.to == 3]
    assert rejects
    assert all(m.reject and m.term == 3 for m in rejects)
    assert net.nodes[3].role == Role.FOLLOWER
    assert net.nodes[3].term == 3
    assert net.leader() == 2
    assert net.nodes[2].term == 3


def test_prevote_from_an_older_term_is_refused_with_the_current_term() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    net.isolate(3)
    net.elect(2)
    net.elect(1)  # term 4; 3 is still at term 2 and would pre-campaign for term 3
    net.heal()
    net.clear_log()
    net.campaign(3)
    rejects = net.msgs(MT.PRE_VOTE_RESP, to=3)
    assert rejects
    assert all(m.reject and m.term == 4 for m in rejects)
    assert net.nodes[3].term == 4
    assert net.leader() == 1


@pytest.mark.parametrize("mtype", [MT.APP, MT.HEARTBEAT, MT.SNAP])
def test_5_2_candidate_steps_down_for_a_leader_of_its_term(mtype: MessageType) -> None:
    net = Network([1, 2, 3], pre_vote=False)
    for i in net.ids:
        net.isolate(i)
    net.campaign(3)
    assert net.nodes[3].role == Role.CANDIDATE
    assert net.nodes[3].term == 2
    # 1 won term 2 elsewhere (with 2's vote) and reaches 3.
    net.nodes[3].step(Message(mtype, to=3, sender=1, term=2, index=3, log_term=1))
    assert net.nodes[3].status().role == Role.FOLLOWER
    assert net.nodes[3].leader == 1
    assert net.nodes[3].term == 2


def test_check_quorum_isolated_leader_steps_down() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(1)
    k = 0
    while net.nodes[1].role == Role.LEADER:
        net.tick(ids=[1])
        k += 1
        assert k <= 20
    # It is checked once per election timeout, so it takes between one and two.
    assert 10 <= k <= 20
    assert net.nodes[1].leader == 0


def test_check_quorum_leader_with_quorum_stays() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.isolate(3)
    net.tick(50)
    assert net.nodes[1].role == Role.LEADER


def test_check_quorum_followers_in_lease_ignore_vote_requests() -> None:
    net = Network([1, 2, 3], pre_vote=False)
    net.elect(1)
    net.tick(2)
    net.clear_log()
    net.campaign(3)  # a disruptive candidate at term 3
    assert net.nodes[3].term == 3
    assert net.count(MT.VOTE_RESP) == 0  # no answer at all: ignored, not refused
    assert net.nodes[1].role == Role.LEADER
    assert net.nodes[2].term == 2
    assert net.nodes[2].hard_state.vote == 1


def test_check_quorum_follower_outside_lease_votes() -> None:
    net = Network([1, 2, 3], pre_vote=False)
    net.elect(1)
    net.isolate(1)
    net.tick(10, ids=[2])
    net.campaign(3)
    assert net.nodes[3].role == Role.LEADER


def test_learner_never_campaigns() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.add_joining(4)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.stabilize()
    assert net.nodes[4].conf_state.learners == (4,)
    net.isolate(4)
    net.clear_log()
    net.tick(100, ids=[4])
    net.nodes[4].campaign()
    net.stabilize()
    assert net.nodes[4].role == Role.FOLLOWER
    assert not [m for m in net.sent if m.sender == 4]


def test_learner_vote_does_not_count() -> None:
    net = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    net.elect(1)
    net.add_joining(4)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.stabilize()
    for i in net.ids:
        net.isolate(i)
    net.campaign(2)
    # Candidates ask only voters; even an answer from the learner elects nobody.
    assert not [m for m in net.sent if m.type == MT.VOTE and m.to == 4]
    term = net.nodes[2].term
    net.nodes[2].step(Message(MT.VOTE_RESP, to=2, sender=4, term=term))
    assert net.nodes[2].role == Role.CANDIDATE
    net.nodes[2].step(Message(MT.VOTE_RESP, to=2, sender=3, term=term))
    assert net.nodes[2].status().role == Role.LEADER


def test_joined_member_outside_any_configuration_never_campaigns() -> None:
    net = Network([1])
    node = net.add_joining(9)
    net.isolate(9)
    net.tick(100, ids=[9])
    node.campaign()
    assert node.role == Role.FOLLOWER
    assert node.term == 0


def test_single_member_elects_itself_at_once() -> None:
    net = Network([1])
    net.campaign(1)
    assert net.nodes[1].role == Role.LEADER
    net.propose(1, b"x")
    assert net.data(1) == [b"x"]
