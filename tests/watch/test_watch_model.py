"""Property test of the watch hub against a real MVCCStore.

Random puts, deletes, txns touching several keys and compactions, applied to the
store and published to the hub; meanwhile random watches (random keys and ranges,
start revisions in the past, compacted, now or in the future, filters, prev_kv) on
two streams, drained with random sizes, cancelled, asked for progress, ticked; the
hub has random buffer, lag and catch-up bounds. Then everything is drained, and
each watch's responses are checked against the store's own event log:

- a watch sees exactly the matching events from its start, once each, in revision
  order, without a gap, the events of a revision in one response;
- a watch that ended was cancelled by its client, or with a compact revision (and
  everything it got was older than that), or with a reason: what it got before is
  a prefix of what it should get (nothing lost silently);
- a progress notification at revision R comes after every event up to R;
- replaying a live watch's events onto the state before its start gives the
  store's final state of its range.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from raftkv.kv.mvcc import (
    DeleteRangeRequest,
    Event,
    EventType,
    MVCCError,
    MVCCStore,
    PutRequest,
    RequestOp,
)
from raftkv.kv.mvcc.ranges import in_range
from raftkv.kv.watch import (
    PROGRESS_WATCH_ID,
    REASON_TOO_SLOW,
    Filter,
    WatchHub,
    WatchResponse,
    WatchStream,
)

KEYS = [b"a", b"ab", b"b", b"ba", b"c"]
ENDS = [b"", b"", b"", b"\x00", b"b", b"bb", b"c", b"d"]
VALUES = [b"1", b"2", b"3"]
FILTERS: list[tuple[Filter, ...]] = [(), (), (), (Filter.NOPUT,), (Filter.NODELETE,)]
STREAMS = 2

key_i = st.integers(0, len(KEYS) - 1)
end_i = st.integers(0, len(ENDS) - 1)
stream_i = st.integers(0, STREAMS - 1)


@dataclass(frozen=True)
class Put:
    key: int
    value: int


@dataclass(frozen=True)
class Delete:
    key: int
    end: int


@dataclass(frozen=True)
class Txn:
    ops: tuple[Put | Delete, ...]


@dataclass(frozen=True)
class Burst:
    """Puts faster than the streams drain."""

    key: int
    n: int


@dataclass(frozen=True)
class Compact:
    pick: int


@dataclass(frozen=True)
class Create:
    stream: int
    key: int
    end: int
    kind: int
    """0: from now; else a start revision from 1 to cur + 3, picked by `pick`."""
    pick: int
    filters: int
    prev_kv: bool
    progress_notify: bool


@dataclass(frozen=True)
class Drain:
    stream: int
    n: int


@dataclass(frozen=True)
class Cancel:
    stream: int
    pick: int


@dataclass(frozen=True)
class Progress:
    stream: int


@dataclass(frozen=True)
class Tick:
    dt: int


Op = Put | Delete | Txn | Burst | Compact | Create | Drain | Cancel | Progress | Tick

write_op = st.one_of(
    st.builds(Put, key_i, st.integers(0, len(VALUES) - 1)),
    st.builds(Delete, key_i, end_i),
)
create_op = st.builds(
    Create,
    stream_i,
    key_i,
    end_i,
    st.integers(0, 3),
    st.integers(0, 1000),
    st.integers(0, len(FILTERS) - 1),
    st.booleans(),
    st.booleans(),
)
drain_op = st.builds(Drain, stream_i, st.integers(1, 6))
ops: st.SearchStrategy[Op] = st.one_of(
    *[write_op] * 4,
    st.builds(Txn, st.lists(write_op, min_size=2, max_size=4).map(tuple)),
    st.builds(Burst, key_i, st.integers(2, 8)),
    create_op,
    create_op,
    drain_op,
    drain_op,
    st.builds(Compact, st.integers(0, 1000)),
    st.builds(Cancel, stream_i, st.integers(0, 1000)),
    st.builds(Progress, stream_i),
    st.builds(Tick, st.integers(0, 7)),
)


@dataclass
class Watch:
    stream: int
    wid: int
    key: bytes
    end: bytes
    start: int
    """The first revision it wants (start_revision, or the revision after now)."""
    filters: tuple[Filter, ...]
    prev_kv: bool
    created_rev: int
    client_cancelled: bool = False
    got: list[Event] = field(default_factory=list)
    terminal: WatchResponse | None = None

    def wants(self, ev: Event) -> bool:
        if ev.kv.mod_revision < self.start or not in_range(ev.kv.key, self.key, self.end):
            return False
        if ev.type is EventType.PUT:
            return Filter.NOPUT not in self.filters
        return Filter.NODELETE not in self.filters

    def expected(self, log: list[Event]) -> list[Event]:
        return [ev if self.prev_kv else replace(ev, prev_kv=None) for ev in log if self.wants(ev)]


class Run:
    def __init__(self, max_buffered: int, max_lag: int | None, max_syncs: int) -> None:
        self.store = MVCCStore()
        self.hub = WatchHub(
            self.store.events,
            lambda: self.store.revision,
            max_buffered_events=max_buffered,
            max_lag_revisions=max_lag,
            max_syncs_per_drain=max_syncs,
            progress_interval=10.0,
        )
        self.streams: list[WatchStream] = [self.hub.new_stream() for _ in range(STREAMS)]
        self.responses: list[list[WatchResponse]] = [[] for _ in range(STREAMS)]
        self.log: list[Event] = []
        self.states: list[dict[bytes, bytes]] = [{}, {}]  # by revision; revision 1: empty
        self.watches: list[Watch] = []
        self.compactions: list[int] = []
        self.now = 0.0

    # -- writes --------------------------------------------------------------------

    def write(self, op: Put | Delete | Txn) -> None:
        try:
            if isinstance(op, Txn):
                events = self.store.txn(success=[self.request(o) for o in op.ops]).events
            elif isinstance(op, Put):
                events = self.store.put(KEYS[op.key], VALUES[op.value]).events
            else:
                events = self.store.delete_range(KEYS[op.key], ENDS[op.end]).events
        except MVCCError:  # a txn writing a key twice, an empty range
            return
        if not events:
            return
        assert events[0].kv.mod_revision == self.store.revision == len(self.states)
        state = dict(self.states[-1])
        for ev in events:
            if ev.type is EventType.PUT:
                state[ev.kv.key] = ev.kv.value
            else:
                del state[ev.kv.key]
        self.states.append(state)
        self.log.extend(events)
        self.hub.publish(events)

    @staticmethod
    def request(op: Put | Delete) -> RequestOp:
        if isinstance(op, Put):
            return PutRequest(KEYS[op.key], VALUES[op.value])
        return DeleteRangeRequest(KEYS[op.key], ENDS[op.end])

    def compact(self, pick: int) -> None:
        lo = max(self.store.compact_revision + 1, 1)
        cur = self.store.revision
        if lo > cur:
            return
        rev = lo + pick % (cur - lo + 1)
        self.store.compact(rev)
        self.compactions.append(rev)

    # -- watches -------------------------------------------------------------------

    def create(self, op: Create) -> None:
        cur = self.store.revision
        start = 0 if op.kind == 0 else 1 + op.pick % (cur + 3)
        key, end, filters = KEYS[op.key], ENDS[op.end], FILTERS[op.filters]
        wid = self.streams[op.stream].create(
            key,
            end,
            start_revision=start,
            filters=filters,
            prev_kv=op.prev_kv,
            progress_notify=op.progress_notify,
        )
        if wid == PROGRESS_WATCH_ID:
            assert end not in (b"", b"\x00")
            assert key >= end
            return
        self.watches.append(
            Watch(op.stream, wid, key, end, start or cur + 1, filters, op.prev_kv, cur)
        )

    def cancel(self, s: int, pick: int) -> None:
        live = [w for w in self.watches if w.stream == s and not w.client_cancelled]
        if not live:
            return
        w = live[pick % len(live)]
        in_use = w.wid in self.streams[s].watch_ids
        assert self.streams[s].cancel(w.wid) == in_use
        w.client_cancelled = in_use

    def drain(self, s: int, n: int) -> None:
        self.responses[s].extend(self.hub.drain(self.streams[s], n))

    def finish(self) -> None:
        for s, stream in enumerate(self.streams):
            for _ in range(1000):
                if not stream.pending:
                    break
                self.drain(s, 1000)
            assert not stream.pending
        st = self.hub.stats()
        assert st.unsynced == 0
        assert st.buffered_events == 0

    # -- checks --------------------------------------------------------------------

    def run(self, op: Op) -> None:
        match op:
            case Put() | Delete() | Txn():
                self.write(op)
            case Burst(key, n):
                for i in range(n):
                    self.write(Put((key + i % 2) % len(KEYS), i % len(VALUES)))
            case Compact(pick):
                self.compact(pick)
            case Create():
                self.create(op)
            case Drain(s, n):
                self.drain(s, n)
            case Cancel(s, pick):
                self.cancel(s, pick)
            case Progress(s):
                self.streams[s].request_progress()
            case Tick(dt):
                self.now += dt
                self.hub.tick(self.now)

    def check(self) -> None:
        for s in range(STREAMS):
            self.check_stream(s)
        final = self.states[-1]
        ended = 0
        for w in self.watches:
            want = w.expected(self.log)
            assert w.got == want[: len(w.got)], "a gap, a duplicate or a wrong event"
            t = w.terminal
            if t is None:
                assert not w.client_cancelled
                assert w.got == want, "a live watch missed events"
                if not w.filters:
                    self.check_replay(w, final)
                continue
            ended += 1
            assert t.canceled
            assert not t.events
            if w.client_cancelled:
                assert t.compact_revision == 0
                assert not t.cancel_reason
            elif t.compact_revision:
                assert t.compact_revision in self.compactions
                assert all(ev.kv.mod_revision < t.compact_revision for ev in w.got)
            else:
                assert t.cancel_reason == REASON_TOO_SLOW
        assert self.hub.stats().watchers == len(self.watches) - ended

    def check_stream(self, s: int) -> None:
        mine = {w.wid: w for w in self.watches if w.stream == s}
        created: set[int] = set()
        for r in self.responses[s]:
            if r.created:
                if r.watch_id == PROGRESS_WATCH_ID:
                    assert r.canceled
                    assert r.cancel_reason
                    continue
                w = mine[r.watch_id]
                assert r.watch_id not in created
                assert r.revision == w.created_rev
                created.add(r.watch_id)
                continue
            if r.watch_id == PROGRESS_WATCH_ID:
                assert r.is_progress_notify
                for wid in created:
                    self.check_progress(mine[wid], r.revision)
                continue
            w = mine[r.watch_id]
            assert r.watch_id in created, "a response before created"
            assert w.terminal is None, "a response after the cancel"
            if r.canceled:
                w.terminal = r
                created.discard(r.watch_id)
            elif r.events:
                revs = [ev.kv.mod_revision for ev in r.events]
                assert revs == sorted(revs)
                assert r.revision >= revs[-1]
                if w.got:
                    assert revs[0] > w.got[-1].kv.mod_revision, "a revision split or repeated"
                w.got.extend(r.events)
            else:
                assert r.is_progress_notify
                self.check_progress(w, r.revision)

    def check_progress(self, w: Watch, rev: int) -> None:
        """Everything up to `rev` was sent before the notification."""
        want = [ev for ev in w.expected(self.log) if ev.kv.mod_revision <= rev]
        assert rev <= self.store.revision
        assert w.got[: len(want)] == want, "a progress notification ahead of events"

    def check_replay(self, w: Watch, final: dict[bytes, bytes]) -> None:
        before = self.states[min(w.start - 1, len(self.states) - 1)]
        state = {k: v for k, v in before.items() if in_range(k, w.key, w.end)}
        for ev in w.got:
            if ev.type is EventType.PUT:
                state[ev.kv.key] = ev.kv.value
            else:
                assert ev.kv.key in state
                del state[ev.kv.key]
        assert state == {k: v for k, v in final.items() if in_range(k, w.key, w.end)}
        got = {kv.key: kv.value for kv in self.store.range(w.key, w.end or b"").kvs}
        assert state == got


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    max_buffered=st.integers(1, 4),
    max_lag=st.one_of(st.none(), st.integers(2, 12)),
    max_syncs=st.integers(1, 3),
    program=st.lists(ops, min_size=20, max_size=120),
)
def test_every_watch_sees_its_events_exactly_once_in_order(
    max_buffered: int, max_lag: int | None, max_syncs: int, program: list[Op]
) -> None:
    run = Run(max_buffered, max_lag, max_syncs)
    for op in program:
        run.run(op)
    run.finish()
    run.check()
    for w in run.watches:
        t = w.terminal
        if t is None:
            event("watch: live, with events" if w.got else "watch: live, no events")
        elif w.client_cancelled:
            event("watch: cancelled by client")
        else:
            event("watch: compacted" if t.compact_revision else "watch: too slow")
    st = run.hub.stats()
    event(f"moved unsynced: {min(st.moved_unsynced, 3)}")
    event(f"progress sent: {min(st.progress_sent, 2)}")
