"""The watch's resume rule, line by line, without a network (`WatchState` is the pure
part of `client_watch`): which revision a new stream starts from after each kind of
line, and which lines end the watch for the caller."""

from __future__ import annotations

import base64
import json

import pytest

from raftkv.client import BadResponse, Compacted, Unavailable
from raftkv.client_ops import Compare, Op, prefix_end
from raftkv.client_watch import WatchCanceled, WatchSpec, WatchState, _Dialer, _Reconnect


def header(rev: int) -> dict[str, object]:
    return {"cluster_id": "c", "member_id": 1, "revision": rev, "raft_term": 2}


def line(rev: int, **fields: object) -> str:
    return json.dumps({"header": header(rev), "watch_id": 0, **fields})


def kv(key: str, rev: int, value: str = "v") -> dict[str, object]:
    return {
        "key": base64.b64encode(key.encode()).decode(),
        "create_revision": rev,
        "mod_revision": rev,
        "version": 1,
        "value": base64.b64encode(value.encode()).decode(),
        "lease": 0,
    }


def put(key: str, rev: int) -> dict[str, object]:
    return {"type": "PUT", "kv": kv(key, rev)}


def state(start: int = 0) -> WatchState:
    s = WatchState(WatchSpec.of("k", None, False, start, False, False, False))
    s.new_stream()
    return s


def test_a_watch_from_now_resumes_after_the_revision_it_was_created_at() -> None:
    s = state()
    assert "start_revision" not in s.params(2.0)
    assert s.on_line(line(7, created=True)) == []
    assert s.next_revision == 8
    assert s.params(2.0)["start_revision"] == "8"


def test_a_watch_from_a_past_revision_keeps_it_until_events_come() -> None:
    s = state(3)
    s.on_line(line(9, created=True))  # the header is "now", not what was replayed
    assert s.next_revision == 3
    evs = s.on_line(line(5, events=[put("k", 4), put("k", 5)]))
    assert [e.revision for e in evs] == [4, 5]
    assert s.next_revision == 6


def test_progress_lines_move_the_resume_point_but_never_back() -> None:
    s = state()
    s.on_line(line(10, created=True))
    s.on_line(line(15, progress_notify=True, watch_id=-1))
    assert (s.next_revision, s.last_revision) == (16, 15)
    s.on_line(line(12, progress_notify=True))  # a member that is behind
    assert s.next_revision == 16
    assert s.on_line("") == []  # keep-alive
    assert s.next_revision == 16


def test_events_already_seen_are_dropped_after_a_reconnect() -> None:
    s = state()
    s.on_line(line(3, created=True))
    s.on_line(line(5, events=[put("k", 4), put("k", 5)]))
    s.new_stream()
    s.on_line(line(9, created=True))
    evs = s.on_line(line(6, events=[put("k", 5), put("k", 6)]))
    assert [e.revision for e in evs] == [6]


def test_lines_that_end_the_watch() -> None:
    s = state(2)
    s.on_line(line(9, created=True))
    with pytest.raises(Compacted) as exc:
        s.on_line(line(9, canceled=True, compact_revision=5))
    assert exc.value.compact_revision == 5
    s = state()
    s.on_line(line(9, created=True))
    with pytest.raises(_Reconnect):  # too slow: a new watch from next_revision catches up
        s.on_line(line(9, canceled=True, cancel_reason="too slow"))
    s = state()
    with pytest.raises(WatchCanceled):  # refused at creation
        s.on_line(line(9, created=True, canceled=True, cancel_reason="empty range"))
    for bad in (
        "{",
        json.dumps({"events": "x"}),
        line(3, events=[{"type": "X", "kv": kv("k", 3)}]),
    ):
        s = state()
        s.on_line(line(1, created=True))
        with pytest.raises(BadResponse):
            s.on_line(bad)


def test_dialer_moves_on_pauses_after_each_round_and_gives_up() -> None:
    d = _Dialer(3, 1, 0.1, 0.25, 5.0)
    assert [(d.failed(0.0, "x"), d.ep) for _ in range(3)] == [(0.0, 2), (0.0, 0), (0.1, 1)]
    assert [d.failed(1.0, "x") for _ in range(6)][2::3] == [0.2, 0.25]
    with pytest.raises(Unavailable):
        d.failed(5.5, "x")
    d.connected()
    assert d.failed(100.0, "x") == 0.0  # the clock restarts once a stream worked


def test_ranges_and_compares_on_the_wire() -> None:
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert Op.get("", prefix=True).to_json() == {"key": "AA==", "range_end": "AA=="}
    assert (Compare.value("k") != "x").to_json() == {
        "key": "aw==",
        "target": "VALUE",
        "result": "NOT_EQUAL",
        "value": "eA==",
    }
    assert (Compare.mod("a", prefix=True) < 5).to_json() == {
        "key": "YQ==",
        "target": "MOD",
        "result": "LESS",
        "range_end": "Yg==",
        "mod_revision": 5,
    }
    with pytest.raises(ValueError, match="empty"):
        Op.put("", b"v")
    with pytest.raises(ValueError, match="not both"):
        Op.get("a", "b", prefix=True)
