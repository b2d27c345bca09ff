"""The progress tracker (raftkv.raft.tracker) and the per-member flow control it holds:
§5.3 nextIndex/matchIndex, §5.2 vote tallies, thesis §4.1 membership, §6.2 CheckQuorum
activity, and the bounded window of in-flight appends."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from raftkv.raft import quorum
from raftkv.raft.progress import Inflights, Progress
from raftkv.raft.quorum import VoteResult
from raftkv.raft.tracker import ProgressTracker
from raftkv.raft.types import ConfState, ProgressState

WINDOW = 10  # the election timeout, in ticks


def tracker(voters: tuple[int, ...] = (1, 2, 3), learners: tuple[int, ...] = ()) -> ProgressTracker:
    t = ProgressTracker(ConfState(voters, learners), max_inflight=4, active_window=WINDOW)
    t.reset(t.conf, last_index=10, self_id=1, self_stable=10, now=0)
    return t


def pr(t: ProgressTracker, mid: int) -> Progress:
    p = t.get(mid)
    assert p is not None
    return p


# --- §5.3: nextIndex and matchIndex -----------------------------------------------


def test_5_3_reset_probes_everyone_from_just_past_the_last_entry() -> None:
    t = tracker(learners=(4,))
    assert sorted(t) == [1, 2, 3, 4]
    assert all(pr(t, m).next == 11 and pr(t, m).state == ProgressState.PROBE for m in t)
    assert [m for m in t if pr(t, m).is_learner] == [4]
    assert t.peers(1) == [2, 3, 4]


def test_10_2_1_leader_counts_its_own_entries_only_once_durable() -> None:
    t = ProgressTracker(ConfState((1, 2, 3)), max_inflight=4, active_window=WINDOW)
    t.reset(t.conf, last_index=10, self_id=1, self_stable=7, now=0)
    assert pr(t, 1).match == 7
    assert pr(t, 2).match == 0


def test_5_3_committed_is_the_index_a_majority_of_voters_acknowledged() -> None:
    t = tracker(learners=(4,))
    pr(t, 1).maybe_update(10)
    pr(t, 4).maybe_update(10)  # a learner's ack never commits
    assert t.committed() == 0
    pr(t, 3).maybe_update(6)
    assert t.committed() == 6
    pr(t, 2).maybe_update(8)
    assert t.committed() == 8


@given(
    st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=7),
    st.lists(st.integers(min_value=0, max_value=100), max_size=3),
)
def test_5_3_committed_agrees_with_quorum_for_any_matches(
    voter_matches: list[int], learner_matches: list[int]
) -> None:
    voters = tuple(range(1, len(voter_matches) + 1))
    learners = tuple(range(50, 50 + len(learner_matches)))
    t = ProgressTracker(ConfState(voters, learners), max_inflight=4, active_window=WINDOW)
    t.reset(t.conf, last_index=100, self_id=1, self_stable=0, now=0)
    for mid, m in zip((*voters, *learners), (*voter_matches, *learner_matches), strict=True):
        pr(t, mid).maybe_update(m)
    assert t.committed() == quorum.committed_index(
        voters, dict(zip(voters, voter_matches, strict=True))
    )


def test_4_2_2_most_up_to_date_voter_ignores_learners() -> None:
    t = tracker(learners=(4,))
    pr(t, 4).maybe_update(10)
    pr(t, 2).maybe_update(6)
    pr(t, 3).maybe_update(6)
    assert t.most_up_to_date_voter() == (1, 10)  # self is durable up to 10
    assert ProgressTracker(ConfState(), 4, WINDOW).most_up_to_date_voter() == (0, -1)


# --- thesis §4.1: single-server membership changes --------------------------------


def test_4_1_apply_conf_keeps_survivors_adds_newcomers_forgets_the_removed() -> None:
    t = tracker()
    pr(t, 2).maybe_update(9)
    t.apply_conf(ConfState((1, 2), (5,)), last_index=12, now=3)
    assert sorted(t) == [1, 2, 5]
    assert pr(t, 2).match == 9  # a survivor keeps its position
    newcomer = pr(t, 5)
    assert newcomer.is_learner
    assert newcomer.match == 0
    assert newcomer.next == 12
    assert newcomer.last_active_tick == 3
    assert not newcomer.responded
    assert t.voters == (1, 2)


def test_4_1_promotion_keeps_the_learners_progress() -> None:
    t = tracker(learners=(4,))
    pr(t, 4).maybe_update(10)
    t.apply_conf(ConfState((1, 2, 3, 4)), last_index=10, now=0)
    assert not pr(t, 4).is_learner
    assert pr(t, 4).match == 10
    assert t.committed() == 0  # now 3 of 4 are needed; 2 and 3 hold nothing yet


# --- §5.2: votes ---------------------------------------------------------------------


def test_5_2_each_voter_is_counted_once_per_round() -> None:
    t = tracker()
    t.record_vote(1, True)
    t.record_vote(2, False)
    t.record_vote(2, True)  # a duplicate answer does not change its first one
    assert t.vote_result() == VoteResult.PENDING
    t.record_vote(3, False)
    assert t.vote_result() == VoteResult.LOST
    t.reset_votes()
    t.record_vote(1, True)
    t.record_vote(3, True)
    assert t.vote_result() == VoteResult.WON


def test_5_2_a_learners_grant_elects_nobody() -> None:
    t = tracker(learners=(4, 5))
    t.record_vote(1, True)
    t.record_vote(4, True)
    t.record_vote(5, True)
    assert t.vote_result() == VoteResult.PENDING


# --- thesis §6.2: CheckQuorum and recent activity ------------------------------------


def test_6_2_quorum_active_counts_self_and_members_heard_within_a_timeout() -> None:
    t = tracker((1, 2, 3, 4, 5))
    now = WINDOW  # the grace period of the fresh progresses has just run out
    assert not t.quorum_active(1, now)
    t.record_response(2, now - 1)
    assert not t.quorum_active(1, now)
    t.record_response(3, now - WINDOW + 1)
    assert t.quorum_active(1, now)
    assert not t.quorum_active(1, now + 2)  # 3 went quiet


def test_6_2_fresh_progress_is_active_but_not_reachable_until_it_answers() -> None:
    t = tracker()
    assert t.quorum_active(1, WINDOW - 1)  # grace period
    assert t.reachable(1, 1) == {1}
    t.record_response(2, 1)
    t.record_response(99, 1)  # unknown members are ignored
    assert t.reachable(1, 1) == {1, 2}
    assert t.reachable(1, 1 + WINDOW) == {1}
    assert t.is_active(pr(t, 2), WINDOW)
    assert not t.is_active(pr(t, 2), 1 + WINDOW)


def test_status_view_reports_self_active_and_copies_progress() -> None:
    t = tracker()
    view = t.peer_progress(1, 5 * WINDOW)
    assert view[1].recent_active
    assert not view[2].recent_active
    assert (view[2].match, view[2].next, view[2].state) == (0, 11, ProgressState.PROBE)


# --- flow control ----------------------------------------------------------------------


def test_flow_control_window_pauses_when_full_and_frees_on_ack() -> None:
    p = Progress(1, max_inflight=3)
    p.maybe_update(0)
    p.become_replicate()
    for last in (2, 4, 6):
        assert not p.is_paused()
        p.sent_entries(last)
    assert p.is_paused()
    assert p.inflights.count() == 3
    p.free_inflights_to(4)
    assert not p.is_paused()
    assert p.inflights.count() == 1


def test_flow_control_heartbeat_answer_frees_one_slot_of_a_full_window() -> None:
    p = Progress(1, max_inflight=2)
    p.become_replicate()
    p.sent_entries(3)
    p.sent_entries(5)
    assert p.is_paused()
    p.heartbeat_responded()
    assert not p.is_paused()
    assert p.inflights.count() == 1
    p.heartbeat_responded()  # not full: nothing freed
    assert p.inflights.count() == 1


def test_flow_control_heartbeat_answer_lets_a_probe_go_out_again() -> None:
    p = Progress(5, max_inflight=2)
    p.sent_entries(None)
    assert p.is_paused()
    p.heartbeat_responded()
    assert not p.is_paused()


def test_inflights_free_first_one_on_empty_window_is_harmless() -> None:
    w = Inflights(2)
    w.free_first_one()
    w.add(3)
    w.add(4)
    assert w.full()
    w.free_first_one()
    assert list(w.queue) == [4]
