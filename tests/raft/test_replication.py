"""§5.3 log replication, §5.4.2 committing entries from previous terms, and the leader's
flow control (etcd's Progress: probe, replicate, snapshot).

More scenarios are interactions in testdata/log_replication_5_3*.txt (see
test_interaction.py)."""

from __future__ import annotations

from collections import deque

from raftkv.raft import Entry, Message, MessageType, Role
from raftkv.raft.types import ProgressState

from .harness import Network

MT = MessageType


def test_5_3_followers_learn_commit_from_next_append_or_heartbeat() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.hold(MT.APP_RESP)
    net.propose(1, b"x")
    assert net.nodes[2].commit < net.nodes[2].last_index
    net.release()
    assert net.nodes[1].commit == net.nodes[1].last_index
    net.tick()  # heartbeat carries the commit index
    assert net.data(2) == [b"x"]
    assert net.data(3) == [b"x"]


def test_5_3_heartbeat_never_commits_beyond_what_the_follower_has() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.drop(MT.APP, to=3)
    net.propose(1, b"x")
    net.clear_log()
    net.tick()
    hb = net.msgs(MT.HEARTBEAT, to=3)
    assert hb
    assert all(m.commit <= 4 for m in hb)
    assert net.nodes[3].commit == 4


def test_5_3_consistency_check_rejects_mismatched_previous_entry() -> None:
    net = Network([1, 2, 3])
    net.elect(1)  # logs: 1..3 term 1, 4 term 2
    n2 = net.nodes[2]
    # prev (4, term 5) does not match our (4, term 2).
    n2.step(Message(MT.APP, to=2, sender=1, term=2, index=4, log_term=5, entries=(Entry(5, 5),)))
    net.process(2)
    resp = net.queue.pop()
    assert resp.type == MT.APP_RESP
    assert resp.reject
    assert resp.index == 4
    assert resp.reject_hint == 4
    assert resp.log_term == 2
    assert n2.last_index == 4
    # prev beyond our log: the hint is our last index.
    n2.step(Message(MT.APP, to=2, sender=1, term=2, index=9, log_term=2))
    net.process(2)
    resp = net.queue.pop()
    assert resp.reject
    assert resp.reject_hint == 4


def test_5_3_append_below_commit_is_acknowledged_at_commit() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    n2 = net.nodes[2]
    n2.step(Message(MT.APP, to=2, sender=1, term=2, index=1, log_term=1, entries=(Entry(1, 2),)))
    net.process(2)
    resp = net.queue.pop()
    assert not resp.reject
    assert resp.index == n2.commit == 5


def test_5_3_conflicting_suffix_is_truncated_and_replaced() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    net.elect(1)
    net.isolate(1)
    for k in range(3):
        net.propose(1, f"lost{k}".encode())  # only in 1's log, never committed
    assert net.nodes[1].last_index == 7
    net.elect(2)
    net.propose(2, b"kept")
    net.heal()
    net.tick()
    assert net.nodes[1].role == Role.FOLLOWER
    assert net.storage[1].entries == net.storage[2].entries
    assert [e.term for e in net.storage[1].entries[4:]] == [3, 3]
    for i in net.ids:
        assert net.data(i) == [b"kept"]


def _diverge(net: Network, follower_count: int, leader_count: int) -> None:
    """Leave member 1 with `follower_count` uncommitted entries of term 2 after index 4,
    while the others commit `leader_count` entries of term 3 there; then 3 becomes
    leader in term 4, so its first probe to 1 starts from the end of its own log."""
    net.elect(1)
    net.isolate(1)
    net.nodes[1].propose_batch([f"d{k}".encode() for k in range(follower_count)])
    net.stabilize()
    net.elect(2)
    net.nodes[2].propose_batch([f"n{k}".encode() for k in range(leader_count)])
    net.stabilize()
    net.elect(3)
    assert net.nodes[3].term == 4


def test_5_3_fast_backtracking_one_round_trip_per_divergent_term() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    _diverge(net, 100, 100)
    net.heal()
    net.clear_log()
    net.tick()
    rejections = [m for m in net.msgs(MT.APP_RESP, frm=1) if m.reject]
    # Naive backtracking would take one rejection per divergent entry (100).
    assert len(rejections) == 1
    assert net.storage[1].entries == net.storage[3].entries
    assert net.data(1) == [f"n{k}".encode() for k in range(100)]


def test_5_3_fast_backtracking_when_the_follower_log_is_longer() -> None:
    net = Network([1, 2, 3], check_quorum=False)
    _diverge(net, 100, 10)
    net.heal()
    net.clear_log()
    net.tick()
    rejections = [m for m in net.msgs(MT.APP_RESP, frm=1) if m.reject]
    assert len(rejections) == 1
    assert net.storage[1].entries == net.storage[3].entries
    assert net.data(1) == [f"n{k}".encode() for k in range(10)]


def test_5_4_2_new_leader_appends_empty_entry_of_its_term() -> None:
    net = Network([1, 2, 3])
    net.elect(2)
    last = net.storage[2].entries[-1]
    assert last == Entry(2, 4)
    assert net.nodes[2].commit == 4
    assert all(net.sm[i].applied[-1] == last for i in net.ids)


def _figure8_until_c(net: Network) -> None:
    """Figure 8 (a)-(c) of the Raft paper with five members.

    (a) 1 leads in term 2 and replicates entry 7 ("a") to 2 only.
    (b) 1 crashes; 5 is elected by 3 and 4 and appends entries 7-8 of its term alone.
    (c) 5 crashes; 1 restarts, is elected, and gets entry 7 onto 3: entry 7 of term 2 is
        now on a majority (1, 2, 3), but its own term's entry 8 is only on 1 and 2.
    """
    net.elect(1)  # term 2, empty entry 6
    for i in (3, 4, 5):
        net.cut(1, i)
    net.propose(1, b"a")
    net.crash(1)
    net.heal()
    net.hold(MT.APP, frm=5)
    net.campaign(5)
    assert net.nodes[5].role == Role.LEADER
    assert net.nodes[5].term == 3
    net.nodes[5].propose(b"b")
    net.stabilize()
    net.discard_held()
    net.crash(5)
    net.restart(1)
    net.cut(1, 4)
    # 3 gets entry 7 but not (yet) 8: hold the append that 3 would accept with 8 in it.
    net.hold(
        MT.APP,
        frm=1,
        to=3,
        where=lambda m: net.nodes[3].last_index >= 7 and any(e.index == 8 for e in m.entries),
    )
    for _ in range(3):
        net.campaign(1)
        if net.nodes[1].role == Role.LEADER:
            break
    term = net.nodes[1].term
    assert net.nodes[1].role == Role.LEADER
    assert term >= 4
    assert net.storage[3].entries[-1] == Entry(2, 7, data=b"a")


def test_5_4_2_figure8_leader_never_commits_previous_term_entry_by_counting() -> None:
    net = Network([1, 2, 3, 4, 5], pre_vote=False, check_quorum=False, max_size_per_msg=1)
    _figure8_until_c(net)
    status = net.nodes[1].status()
    assert status.progress[3].match == 7
    assert status.progress[2].match == 8
    # Entry 7 (term 2) is on 1, 2 and 3 - a majority - yet must not count as committed.
    assert net.nodes[1].commit == 6
    assert net.data(1) == []
    # (d) Indeed 5 can still be elected (by 3 and 4) and overwrite entry 7.
    net.discard_held()
    net.crash(1)
    net.heal()
    net.restart(5)
    for _ in range(3):
        net.campaign(5)
        if net.nodes[5].role == Role.LEADER:
            break
    assert net.nodes[5].role == Role.LEADER
    net.tick()
    for i in (2, 3, 4, 5):
        assert net.data(i) == [b"b"]
        assert net.storage[i].entries[6] == net.storage[5].entries[6]


def test_5_4_2_figure8_entry_of_current_term_commits_previous_ones() -> None:
    net = Network([1, 2, 3, 4, 5], pre_vote=False, check_quorum=False, max_size_per_msg=1)
    _figure8_until_c(net)
    # (e) 1 gets its own term's entry onto a majority: 7 commits with it.
    net.release()
    assert net.nodes[1].commit == 8
    assert net.data(1) == [b"a"]
    net.crash(1)
    net.heal()
    net.restart(5)
    for _ in range(3):
        net.campaign(5)
    assert net.nodes[5].role != Role.LEADER  # 2 and 3 refuse: their logs are newer
    net.tick_until(lambda: bool(net.leaders()))
    net.tick()
    for i in (2, 3, 4, 5):
        assert net.data(i) == [b"a"]


def test_flow_control_probe_state_sends_one_append_at_a_time() -> None:
    net = Network([1, 2, 3])
    net.cut(1, 2)
    net.elect(1)
    assert net.nodes[1].status().progress[2].state == ProgressState.PROBE
    net.heal()
    net.hold(MT.APP, to=2)
    net.clear_log()
    for k in range(5):
        net.propose(1, f"v{k}".encode())
    assert net.count(MT.APP, to=2, sent=True) == 0  # the first probe is still in flight
    net.tick()  # a heartbeat response unpauses the probe: exactly one more
    assert net.count(MT.APP, to=2, sent=True) == 1
    for k in range(5):
        net.propose(1, f"w{k}".encode())
    assert net.count(MT.APP, to=2, sent=True) == 1
    net.release()
    net.tick()
    assert net.nodes[1].status().progress[2].state == ProgressState.REPLICATE
    assert net.data(2) == net.data(1)


def test_flow_control_replicate_state_bounds_inflight_appends() -> None:
    net = Network([1, 2, 3], max_inflight_msgs=3)
    net.elect(1)
    assert net.nodes[1].status().progress[2].state == ProgressState.REPLICATE
    net.hold(MT.APP_RESP, frm=2)
    net.clear_log()
    for k in range(10):
        net.propose(1, f"v{k}".encode())
    # Empty appends that only carry the commit index are not in flight.
    assert len([m for m in net.msgs(MT.APP, to=2) if m.entries]) == 3
    assert len([m for m in net.msgs(MT.APP, to=3) if m.entries]) == 10
    net.release()
    net.tick()
    assert net.data(2) == net.data(1) == [f"v{k}".encode() for k in range(10)]


def test_flow_control_unreachable_follower_falls_back_to_probe() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.nodes[1].report_unreachable(2)
    assert net.nodes[1].status().progress[2].state == ProgressState.PROBE
    net.propose(1, b"x")  # the probe carries the entry; its ack resumes streaming
    assert net.nodes[1].status().progress[2].state == ProgressState.REPLICATE
    assert net.data(2) == [b"x"]


def test_flow_control_heartbeat_response_recovers_up_to_date_follower_from_probe() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.nodes[1].report_unreachable(2)
    net.tick()
    assert net.nodes[1].status().progress[2].state == ProgressState.REPLICATE
    net.clear_log()
    net.tick(5)
    # Once replicating again, an idle leader sends heartbeats only, not empty probes.
    assert net.count(MT.APP, to=2) == 0


def test_flow_control_lost_append_is_repaired_by_rejection() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    f = net.drop(MT.APP, to=2)
    net.propose(1, b"x")  # lost on the way to 2
    net.undo(f)
    net.clear_log()
    net.propose(1, b"y")  # 2 has a gap: rejects, the leader backs off and resends
    assert any(m.reject for m in net.msgs(MT.APP_RESP, frm=2))
    assert net.data(2) == [b"x", b"y"]


def test_flow_control_lost_appends_with_a_full_window_are_resent_after_heartbeat() -> None:
    net = Network([1, 2, 3], max_inflight_msgs=1)
    net.elect(1)
    f = net.drop(MT.APP, to=2)
    net.propose(1, b"x")  # the only in-flight append to 2 is lost
    net.undo(f)
    net.tick(30)  # 2 answers every heartbeat, so it is known to be alive
    net.propose(1, b"y")
    net.tick(3)
    assert net.data(2) == [b"x", b"y"]


def test_flow_control_stale_rejections_are_ignored() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.propose(1, b"x")
    n1 = net.nodes[1]
    before = n1.status().progress[2]
    assert before.state == ProgressState.REPLICATE
    assert before.match == 5
    # A rejection of an index the follower has since acknowledged (reordered network).
    n1.step(Message(MT.APP_RESP, to=1, sender=2, term=2, index=4, reject=True, reject_hint=3))
    assert n1.status().progress[2] == before
    n1.report_unreachable(2)
    probing = n1.status().progress[2]
    assert probing.state == ProgressState.PROBE
    # In probe state only a rejection of the probe just sent (next - 1) counts.
    n1.step(Message(MT.APP_RESP, to=1, sender=2, term=2, index=2, reject=True, reject_hint=1))
    assert n1.status().progress[2] == probing
    assert net.queue == deque() or all(m.to != 2 for m in net.queue)


def test_batched_proposals_travel_in_one_append_per_follower() -> None:
    net = Network([1, 2, 3])
    net.elect(1)
    net.clear_log()
    net.nodes[1].propose_batch([f"v{k}".encode() for k in range(100)])
    net.nodes[1].propose_batch([])
    net.stabilize()
    for i in (2, 3):
        apps = [m for m in net.msgs(MT.APP, frm=1, to=i) if m.entries]
        assert len(apps) == 1
        assert len(apps[0].entries) == 100
        assert len(net.data(i)) == 100


def test_max_size_per_msg_splits_appends() -> None:
    net = Network([1, 2, 3], max_size_per_msg=500)
    net.elect(1)
    net.hold(MT.APP_RESP)  # keep the follower in one burst
    net.clear_log()
    net.nodes[1].propose_batch([bytes([65 + k]) * 100 for k in range(20)])
    net.stabilize()
    net.release()
    net.stabilize()
    apps = [m for m in net.msgs(MT.APP, frm=1, to=2) if m.entries]
    assert sum(len(m.entries) for m in apps) == 20
    assert len(apps) == 5
    for m in apps:
        assert sum(len(e.data) + 24 for e in m.entries) <= 500
    assert len(net.data(2)) == 20


def test_max_size_per_msg_still_sends_one_oversized_entry() -> None:
    net = Network([1, 2, 3], max_size_per_msg=10)
    net.elect(1)
    net.clear_log()
    net.propose(1, b"x" * 100)
    apps = [m for m in net.msgs(MT.APP, frm=1, to=2) if m.entries]
    assert [len(m.entries) for m in apps] == [1]
    assert net.data(2) == [b"x" * 100]
