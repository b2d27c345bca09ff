"""etcd v3.5 watch behaviours of the watch hub, one test (or table) per behaviour,
driven by a real MVCCStore."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pytest

from raftkv.kv.mvcc import (
    DeleteRangeRequest,
    Event,
    MVCCStore,
    PutRequest,
    RequestOp,
    prefix_end,
)
from raftkv.kv.watch import (
    ERR_DUPLICATE_WATCH_ID,
    ERR_EMPTY_WATCHER_RANGE,
    PROGRESS_WATCH_ID,
    REASON_TOO_SLOW,
    Filter,
    WatchHub,
    WatchResponse,
    WatchStream,
)


class Env:
    """A store, a hub fed by it, and one stream."""

    def __init__(self, **hub_kw: object) -> None:
        self.store = MVCCStore()
        self.hub = WatchHub(self.store.events, lambda: self.store.revision, **hub_kw)  # type: ignore[arg-type]
        self.stream = self.hub.new_stream()

    @property
    def rev(self) -> int:
        return self.store.revision

    def put(self, key: bytes, value: bytes = b"v") -> int:
        resp = self.store.put(key, value)
        self.hub.publish(resp.events)
        return resp.revision

    def delete(self, key: bytes, end: bytes = b"") -> int:
        resp = self.store.delete_range(key, end)
        self.hub.publish(resp.events)
        return resp.revision

    def txn(self, *ops: RequestOp) -> int:
        resp = self.store.txn(success=ops)
        self.hub.publish(resp.events)
        return resp.revision

    def watch(self, key: bytes, end: bytes = b"", **kw: object) -> int:
        return self.stream.create(key, end, **kw)  # type: ignore[arg-type]

    def drain(
        self, max_events: int = 1000, stream: WatchStream | None = None
    ) -> list[WatchResponse]:
        return self.hub.drain(stream or self.stream, max_events)


def seen(resps: Sequence[WatchResponse], wid: int) -> list[tuple[str, bytes, int]]:
    """(type, key, mod_revision) of every event sent to watch `wid`."""
    return [
        (ev.type.name, ev.kv.key, ev.kv.mod_revision)
        for r in resps
        if r.watch_id == wid
        for ev in r.events
    ]


def events_of(resps: Sequence[WatchResponse], wid: int) -> list[Event]:
    return [ev for r in resps if r.watch_id == wid for ev in r.events]


def created(wid: int, rev: int) -> WatchResponse:
    return WatchResponse(wid, rev, created=True)


# -- create ----------------------------------------------------------------------


def test_from_now_watch_starts_at_the_next_revision() -> None:
    env = Env()
    env.put(b"a")
    wid = env.watch(b"a")
    assert env.drain() == [created(wid, 2)]
    r3 = env.put(b"a")
    env.put(b"b")
    resps = env.drain()
    assert seen(resps, wid) == [("PUT", b"a", r3)]
    assert [r.revision for r in resps] == [r3]


def test_replay_from_a_past_revision_then_live() -> None:
    env = Env()
    r2 = env.put(b"a", b"1")
    r3 = env.put(b"a", b"2")
    env.put(b"b")
    r5 = env.delete(b"a")
    wid = env.watch(b"a", start_revision=r3)
    resps = env.drain()
    assert resps[0] == created(wid, r5)
    assert seen(resps, wid) == [("PUT", b"a", r3), ("DELETE", b"a", r5)]
    assert resps[1].revision == r5  # caught up: complete to the store revision
    r6 = env.put(b"a", b"3")
    assert seen(env.drain(), wid) == [("PUT", b"a", r6)]
    assert r2 < r3
    assert env.hub.stats().synced == 1


def test_replay_from_revision_1_sees_all_history() -> None:
    env = Env()
    for k in (b"a", b"b", b"a"):
        env.put(k)
    wid = env.watch(b"\x00", b"\x00", start_revision=1)
    assert seen(env.drain(), wid) == [("PUT", b"a", 2), ("PUT", b"b", 3), ("PUT", b"a", 4)]


@pytest.mark.parametrize(
    ("start", "compacted"),
    [(1, True), (2, True), (4, True), (5, False)],
    ids=["rev-1", "below-compact", "at-compact", "above-compact"],
)
def test_compacted_start_is_created_then_cancelled_with_compact_revision(
    start: int, compacted: bool
) -> None:
    env = Env()
    for _ in range(5):
        env.put(b"a")
    env.store.compact(4)
    wid = env.watch(b"a", start_revision=start)
    resps = env.drain()
    assert resps[0] == created(wid, 6)
    if compacted:
        assert resps[1:] == [WatchResponse(wid, 6, canceled=True, compact_revision=4)]
        assert wid not in env.stream.watch_ids
        assert env.hub.stats().compacted_cancelled == 1
        env.put(b"a")
        assert env.drain() == []
    else:
        assert seen(resps, wid) == [("PUT", b"a", 5), ("PUT", b"a", 6)]


def test_future_start_revision_waits_for_it() -> None:
    env = Env()
    wid = env.watch(b"a", start_revision=4)
    assert env.drain() == [created(wid, 1)]
    env.put(b"a")
    env.put(b"a")
    assert env.drain() == []
    env.put(b"a")
    env.put(b"a")
    assert seen(env.drain(), wid) == [("PUT", b"a", 4), ("PUT", b"a", 5)]


@pytest.mark.parametrize(
    ("key", "end", "error"),
    [(b"b", b"a", ERR_EMPTY_WATCHER_RANGE), (b"a", b"a", ERR_EMPTY_WATCHER_RANGE)],
)
def test_empty_range_is_refused(key: bytes, end: bytes, error: str) -> None:
    env = Env()
    assert env.watch(key, end) == PROGRESS_WATCH_ID
    assert env.drain() == [WatchResponse(-1, 1, created=True, canceled=True, cancel_reason=error)]
    assert env.hub.stats().watchers == 0


def test_bad_create_arguments_raise() -> None:
    stream = Env().stream
    with pytest.raises(ValueError, match="start_revision"):
        stream.create(b"a", start_revision=-1)
    with pytest.raises(ValueError, match="watch_id"):
        stream.create(b"a", watch_id=-2)


# -- what a watch gets -------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "want"),
    [
        ((), ["PUT", "DELETE", "PUT"]),
        ((Filter.NOPUT,), ["DELETE"]),
        ((Filter.NODELETE,), ["PUT", "PUT"]),
        ((Filter.NOPUT, Filter.NODELETE), []),
    ],
    ids=["none", "noput", "nodelete", "both"],
)
@pytest.mark.parametrize("path", ["live", "replay"])
def test_filters(filters: Collection[Filter], want: list[str], path: str) -> None:
    env = Env()
    wid = env.watch(b"a", filters=filters) if path == "live" else -1
    env.put(b"a")
    env.delete(b"a")
    env.put(b"a")
    if path == "replay":
        wid = env.watch(b"a", filters=filters, start_revision=2)
    resps = env.drain()
    assert [t for t, _, _ in seen(resps, wid)] == want
    # A revision whose events are all filtered out sends nothing (etcd's w.send).
    assert all(r.events or r.created for r in resps)


@pytest.mark.parametrize("path", ["live", "replay"])
@pytest.mark.parametrize("prev_kv", [False, True])
def test_prev_kv_only_when_asked(path: str, prev_kv: bool) -> None:
    env = Env()
    env.put(b"a", b"1")
    wid = env.watch(b"a", prev_kv=prev_kv) if path == "live" else -1
    env.put(b"a", b"2")
    env.delete(b"a")
    env.put(b"a", b"3")
    if path == "replay":
        wid = env.watch(b"a", prev_kv=prev_kv, start_revision=3)
    evs = events_of(env.drain(), wid)
    prevs = [None if e.prev_kv is None else e.prev_kv.value for e in evs]
    assert prevs == ([b"1", b"2", None] if prev_kv else [None, None, None])
    assert [e.kv.value for e in evs] == [b"2", b"", b"3"]


@pytest.mark.parametrize(
    ("key", "end", "want"),
    [
        (b"b", b"", [b"b"]),
        (b"b", prefix_end(b"b"), [b"b", b"ba", b"bb"]),
        (b"b", b"c", [b"b", b"ba", b"bb"]),
        (b"ba", b"bb", [b"ba"]),
        (b"b", b"\x00", [b"b", b"ba", b"bb", b"c"]),
        (b"\x00", b"\x00", [b"a", b"b", b"ba", b"bb", b"c"]),
        (b"\xff", b"\x00", []),
    ],
    ids=["key", "prefix", "range", "narrow", "from-key", "all-keys", "from-0xff"],
)
@pytest.mark.parametrize("path", ["live", "replay"])
def test_range_and_prefix_watches(key: bytes, end: bytes, want: list[bytes], path: str) -> None:
    env = Env()
    wid = env.watch(key, end) if path == "live" else -1
    for k in (b"a", b"b", b"ba", b"bb", b"c"):
        env.put(k)
    if path == "replay":
        wid = env.watch(key, end, start_revision=2)
    assert [k for _, k, _ in seen(env.drain(), wid)] == want


def test_a_txn_touching_several_keys_is_one_revision() -> None:
    env = Env()
    env.put(b"x")
    wid = env.watch(b"\x00", b"\x00")
    env.drain()
    rev = env.txn(
        PutRequest(b"a", b"1"), PutRequest(b"b", b"2"), DeleteRangeRequest(b"x"), PutRequest(b"c")
    )
    resps = env.drain()
    assert len(resps) == 1
    assert resps[0].revision == rev
    assert seen(resps, wid) == [
        ("PUT", b"a", rev),
        ("PUT", b"b", rev),
        ("DELETE", b"x", rev),
        ("PUT", b"c", rev),
    ]


# -- streams -----------------------------------------------------------------------


def test_many_watches_on_one_stream() -> None:
    env = Env()
    a = env.watch(b"a")
    b = env.watch(b"b")
    ab = env.watch(b"a", b"c")
    assert (a, b, ab) == (0, 1, 2)
    assert env.stream.watch_ids == [0, 1, 2]
    env.put(b"a")
    env.put(b"b")
    resps = env.drain()
    assert [r.watch_id for r in resps if r.created] == [0, 1, 2]
    assert seen(resps, a) == [("PUT", b"a", 2)]
    assert seen(resps, b) == [("PUT", b"b", 3)]
    assert seen(resps, ab) == [("PUT", b"a", 2), ("PUT", b"b", 3)]


def test_each_stream_has_its_own_watch_ids() -> None:
    env = Env()
    other = env.hub.new_stream()
    assert env.watch(b"a") == 0
    assert other.create(b"a") == 0
    env.put(b"a")
    assert seen(env.drain(), 0) == [("PUT", b"a", 2)]
    assert seen(env.drain(stream=other), 0) == [("PUT", b"a", 2)]


def test_explicit_watch_ids_and_duplicates() -> None:
    env = Env()
    assert env.watch(b"a", watch_id=7) == 7
    assert env.watch(b"a", watch_id=7) == PROGRESS_WATCH_ID
    assert env.watch(b"a", watch_id=0) == 0  # 0 is etcd's AutoWatchID
    assert env.watch(b"a") == 1
    resps = env.drain()
    assert resps[1] == WatchResponse(
        -1, 1, created=True, canceled=True, cancel_reason=ERR_DUPLICATE_WATCH_ID
    )
    # auto ids skip ids in use
    assert env.watch(b"a", watch_id=2) == 2
    assert env.watch(b"a") == 3


def test_cancel() -> None:
    env = Env()
    a = env.watch(b"a")
    b = env.watch(b"a")
    env.drain()
    env.put(b"a")  # buffered for a, then dropped by the cancel
    assert env.stream.cancel(a)
    assert not env.stream.cancel(a)
    assert not env.stream.cancel(99)
    resps = env.drain()
    assert resps[0] == WatchResponse(a, 2, canceled=True)
    assert seen(resps, a) == []
    assert seen(resps, b) == [("PUT", b"a", 2)]
    env.put(b"a")
    assert seen(env.drain(), a) == []
    assert env.hub.stats().watchers == 1
    # an explicit id can be reused once cancelled
    assert env.watch(b"a", watch_id=a or 5) in (a, 5)


def test_cancel_of_an_unsynced_watch() -> None:
    env = Env()
    env.put(b"a")
    wid = env.watch(b"a", start_revision=1)
    assert env.hub.stats().unsynced == 1
    assert env.stream.cancel(wid)
    assert env.hub.stats().watchers == 0
    assert env.drain() == [created(wid, 2), WatchResponse(wid, 2, canceled=True)]


def test_closed_stream_ends_its_watches() -> None:
    env = Env()
    env.put(b"a")
    env.watch(b"a")
    env.watch(b"a", b"b")
    env.watch(b"a", start_revision=1)
    env.put(b"a")
    env.stream.close()
    env.stream.close()  # idempotent
    st = env.hub.stats()
    assert (st.streams, st.watchers, st.synced, st.unsynced) == (0, 0, 0, 0)
    env.put(b"a")
    for call in (
        lambda: env.stream.drain(),
        lambda: env.stream.create(b"a"),
        lambda: env.stream.cancel(0),
        lambda: env.stream.request_progress(),
    ):
        with pytest.raises(ValueError, match="closed"):
            call()


# -- slow watchers -----------------------------------------------------------------


def test_revision_is_never_split_whatever_the_drain_size() -> None:
    env = Env()
    live = env.watch(b"\x00", b"\x00")
    env.put(b"z")
    rev = env.txn(*(PutRequest(k) for k in (b"a", b"b", b"c", b"d")))
    env.put(b"y")
    replay = env.watch(b"\x00", b"\x00", start_revision=2)
    resps: list[WatchResponse] = []
    for _ in range(10):
        resps += env.drain(max_events=2)
    for wid in (live, replay):
        got = [seen([r], wid) for r in resps if r.watch_id == wid and r.events]
        assert [k for g in got for _, k, _ in g] == [b"z", b"a", b"b", b"c", b"d", b"y"]
        # the 4-event revision came whole, in a response of its own
        assert [("PUT", k, rev) for k in (b"a", b"b", b"c", b"d")] in got


def test_a_drain_sends_whole_revisions_up_to_max_events() -> None:
    env = Env()
    wid = env.watch(b"a")
    for _ in range(5):
        env.put(b"a")
    first = env.drain(max_events=2)
    assert [r.revision for r in first] == [1, 2, 3]
    assert [r.revision for r in env.drain(max_events=2)] == [4, 5]
    assert [r.revision for r in env.drain(max_events=2)] == [6]
    assert seen(first, wid)[0] == ("PUT", b"a", 2)


def test_full_buffer_moves_the_watcher_aside_then_it_catches_up_from_history() -> None:
    env = Env(max_buffered_events=2)
    wid = env.watch(b"a")
    other = env.watch(b"b")
    env.drain()
    revs = [env.put(b"a", bytes([i])) for i in range(6)]
    env.put(b"b")
    st = env.hub.stats()
    assert (st.synced, st.unsynced, st.moved_unsynced, st.buffered_events) == (1, 1, 1, 3)
    got: list[WatchResponse] = []
    for _ in range(7):  # one event per drain
        got += env.drain(max_events=1)
    assert [rev for _, _, rev in seen(got, wid)] == revs
    assert seen(got, other) == [("PUT", b"b", 8)]
    assert env.hub.stats().unsynced == 0
    r = env.put(b"a")
    assert seen(env.drain(), wid) == [("PUT", b"a", r)]


def test_a_revision_larger_than_the_buffer_is_buffered_whole() -> None:
    env = Env(max_buffered_events=2)
    wid = env.watch(b"\x00", b"\x00")
    rev = env.txn(*(PutRequest(k) for k in (b"a", b"b", b"c")))
    assert env.hub.stats().synced == 1
    assert [k for _, k, _ in seen(env.drain(), wid)] == [b"a", b"b", b"c"]
    assert rev == 2


def test_slow_watcher_behind_the_compaction_is_cancelled_after_its_buffered_events() -> None:
    env = Env(max_buffered_events=1)
    wid = env.watch(b"a")
    env.drain()
    r2 = env.put(b"a")
    env.put(b"a")  # does not fit: moved aside at revision 3
    env.put(b"a")
    env.store.compact(3)
    resps = env.drain()
    assert seen(resps, wid) == [("PUT", b"a", r2)]
    assert resps[-1] == WatchResponse(wid, 4, canceled=True, compact_revision=3)
    assert env.stream.watch_ids == []
    assert env.hub.stats().compacted_cancelled == 1


@pytest.mark.parametrize("via", ["drain", "tick"])
def test_watcher_too_far_behind_is_cancelled_with_a_reason(via: str) -> None:
    env = Env(max_buffered_events=1, max_lag_revisions=3)
    wid = env.watch(b"a")
    keep = env.watch(b"b")
    env.drain()
    for _ in range(4):
        env.put(b"a")  # moved aside at revision 3, lag counted from there
    env.hub.tick(0.0)
    assert env.hub.stats().slow_cancelled == 0
    env.put(b"a")
    env.put(b"a")
    env.put(b"b")
    if via == "tick":
        env.hub.tick(1.0)
        assert env.hub.stats().slow_cancelled == 1
    resps = env.drain()
    assert seen(resps, wid) == [("PUT", b"a", 2)]
    assert resps[-1] == WatchResponse(wid, 8, canceled=True, cancel_reason=REASON_TOO_SLOW)
    assert seen(resps, keep) == [("PUT", b"b", 8)]
    st = env.hub.stats()
    assert (st.slow_cancelled, st.watchers, st.unsynced) == (1, 1, 0)


def test_replay_lag_counts_from_creation_not_from_the_start_revision() -> None:
    env = Env(max_lag_revisions=2)
    for _ in range(10):
        env.put(b"a")
    wid = env.watch(b"a", start_revision=2)
    assert len(seen(env.drain(), wid)) == 10
    assert env.hub.stats().slow_cancelled == 0


def test_catch_up_is_bounded_per_drain() -> None:
    env = Env(max_syncs_per_drain=1)
    for _ in range(3):
        env.put(b"a")
    ids = [env.watch(b"a", start_revision=2) for _ in range(3)]
    env.drain()
    assert env.hub.stats().unsynced == 2
    env.drain()
    env.drain()
    assert env.hub.stats().unsynced == 0
    assert ids == [0, 1, 2]


def test_one_history_read_serves_compacted_and_live_watchers() -> None:
    reads: list[int] = []
    store = MVCCStore()

    def history(start: int) -> list[Event]:
        reads.append(start)
        return store.events(start)

    hub = WatchHub(history, lambda: store.revision)
    stream = hub.new_stream()
    for _ in range(6):
        hub.publish(store.put(b"a").events)
    store.compact(3)
    old = stream.create(b"a", start_revision=2)
    new = stream.create(b"a", start_revision=5)
    newer = stream.create(b"a", start_revision=6)
    resps = stream.drain()
    assert [r.compact_revision for r in resps if r.watch_id == old and r.canceled] == [3]
    assert [rev for _, _, rev in seen(resps, new)] == [5, 6, 7]
    assert [rev for _, _, rev in seen(resps, newer)] == [6, 7]
    assert reads == [2, 5]


def test_restored_store_catches_synced_watchers_up() -> None:
    env = Env()
    wid = env.watch(b"a")
    env.put(b"a", b"1")
    env.drain()
    ahead = MVCCStore.from_snapshot(env.store.snapshot())
    ahead.put(b"b")
    ahead.put(b"a", b"2")
    env.store.restore(ahead.snapshot())
    env.hub.restored()
    assert env.hub.stats().unsynced == 1
    assert seen(env.drain(), wid) == [("PUT", b"a", 4)]
    r = env.put(b"a", b"3")
    assert seen(env.drain(), wid) == [("PUT", b"a", r)]


def test_publish_refuses_revisions_out_of_order() -> None:
    env = Env()
    evs = env.store.put(b"a").events + env.store.put(b"a").events
    with pytest.raises(ValueError, match="published after"):
        env.hub.publish(evs[::-1])
    env.hub.publish(())


@pytest.mark.parametrize(
    "kw",
    [
        {"max_buffered_events": 0},
        {"max_lag_revisions": 0},
        {"max_syncs_per_drain": 0},
        {"progress_interval": 0},
    ],
)
def test_bad_hub_arguments_raise(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Env(**kw)


def test_bad_drain_size_raises() -> None:
    with pytest.raises(ValueError):
        Env().drain(0)


# -- progress ----------------------------------------------------------------------


def test_progress_on_request_when_every_watch_is_synced() -> None:
    env = Env()
    env.watch(b"a")
    env.watch(b"b", b"c")
    env.put(b"x")
    env.drain()
    env.stream.request_progress()
    resps = env.drain()
    assert resps == [WatchResponse(PROGRESS_WATCH_ID, 2)]
    assert resps[0].is_progress_notify
    assert env.hub.stats().progress_sent == 1


def test_progress_request_waits_for_buffered_events() -> None:
    env = Env()
    wid = env.watch(b"a")
    env.drain()
    env.put(b"a")
    env.hub.progress(env.stream)
    resps = env.drain()
    assert [(r.watch_id, r.revision, len(r.events)) for r in resps] == [(wid, 2, 1), (-1, 2, 0)]


def test_progress_request_is_deferred_until_the_stream_is_synced() -> None:
    env = Env(max_buffered_events=1)
    wid = env.watch(b"a")
    for _ in range(4):
        env.put(b"a")
    env.stream.request_progress()
    env.stream.request_progress()  # ignored while one is deferred
    first = env.drain(max_events=1)
    assert not any(r.is_progress_notify for r in first)
    rest: list[WatchResponse] = []
    for _ in range(4):
        rest += env.drain(max_events=1)
    progress = [r for r in rest if r.is_progress_notify]
    assert progress == [WatchResponse(PROGRESS_WATCH_ID, 5)]
    # every event up to its revision came before it
    idx = rest.index(progress[0])
    assert [rev for _, _, rev in seen(first + rest[:idx], wid)] == [2, 3, 4, 5]


def test_progress_request_on_a_stream_without_watches_sends_nothing() -> None:
    env = Env()
    env.stream.request_progress()
    assert env.drain() == []


def test_periodic_progress_for_idle_progress_notify_watches() -> None:
    env = Env(progress_interval=10.0)
    idle = env.watch(b"a", progress_notify=True)
    busy = env.watch(b"b", progress_notify=True)
    plain = env.watch(b"c")
    env.drain()
    env.hub.tick(0.0)  # starts the interval
    assert env.drain() == []
    env.put(b"b")
    env.drain()
    env.hub.tick(5.0)
    assert env.drain() == []
    env.hub.tick(10.0)
    assert env.drain() == [WatchResponse(idle, 2)]
    # busy sent events in the last interval: skipped once, then idle again
    env.hub.tick(20.0)
    assert env.drain() == [WatchResponse(idle, 2), WatchResponse(busy, 2)]
    assert plain == 2


def test_periodic_progress_skips_unsynced_watches() -> None:
    env = Env(progress_interval=1.0)
    env.put(b"a")
    env.watch(b"a", start_revision=1, progress_notify=True)
    env.hub.tick(0.0)
    env.hub.tick(1.0)
    resps = env.drain()
    assert not any(r.is_progress_notify for r in resps)
    env.hub.tick(2.0)  # the catch-up sent events in that interval
    assert env.drain() == []
    env.hub.tick(3.0)
    assert env.drain() == [WatchResponse(0, 2)]


# -- counters ----------------------------------------------------------------------


def test_stats_and_pending() -> None:
    env = Env()
    assert not env.stream.pending
    env.watch(b"a")
    assert env.stream.pending  # the created response
    env.drain()
    assert not env.stream.pending
    env.put(b"a")
    assert env.stream.pending
    env.drain()
    env.put(b"a")
    env.watch(b"a", start_revision=2)
    st = env.hub.stats()
    assert (st.streams, st.watchers, st.synced, st.unsynced, st.buffered_events) == (1, 2, 1, 1, 1)
    env.drain()
    st = env.hub.stats()
    assert (st.watchers, st.synced, st.unsynced, st.buffered_events) == (2, 2, 0, 0)
    assert st.events_sent == 4
    assert st.responses_sent == 5


def test_catch_up_stops_at_the_current_revision_and_publish_delivers_the_rest() -> None:
    # The hub trusts current_revision: history beyond it is left to publish.
    store = MVCCStore()
    published = [1]
    hub = WatchHub(store.events, lambda: published[0])
    stream = hub.new_stream()
    for _ in range(2):
        published[0] = store.put(b"a").revision
    late = store.put(b"a")  # applied, not yet published
    wid = stream.create(b"a", start_revision=2)
    assert seen(stream.drain(), wid) == [("PUT", b"a", 2), ("PUT", b"a", 3)]
    hub.publish(late.events)
    published[0] = late.revision
    assert seen(stream.drain(), wid) == [("PUT", b"a", 4)]
