"""`WatchHub`: etcd v3.5's watchable store (server/storage/mvcc/watchable_store.go)
and the per-stream logic of its gRPC watch server (server/etcdserver/api/v3rpc/
watch.go), sans I/O.

The member's loop drives it: the apply path calls `publish(events)` with the events
of each applied revision; the stream side calls `drain(stream, max_events)` when it
can send, `tick(now)` now and then. Nothing here blocks, sleeps or reads a clock.

Watchers live in two groups, as in etcd:

- synced: up to date with the store; `publish` appends the events of a revision
  they match to their bounded buffer. A watcher whose buffer cannot take a revision
  is moved aside (not blocked on, and the apply path never waits): it becomes
  unsynced from that revision on.
- unsynced: behind the store (created at a past revision, moved aside, or after a
  snapshot restore). `drain` catches them up from the store's history, a bounded
  amount per call, and puts them back with the synced ones once they reach the
  present. One whose revisions were compacted is cancelled with the compact
  revision; one that stays too far behind is cancelled with a reason.

Per watch, responses come in revision order, each event once, the events of one
revision always together, and a cancellation after every event sent before it.

`publish` must see every applied revision, in order, before the next `drain`: the
hub takes the store's `current_revision` as "everything up to here was published".
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import TypeVar

from raftkv.kv.mvcc.errors import Compacted
from raftkv.kv.mvcc.kv import Event, EventType
from raftkv.kv.mvcc.ranges import ALL_KEYS_END, in_range

from .response import (
    ERR_DUPLICATE_WATCH_ID,
    ERR_EMPTY_WATCHER_RANGE,
    PROGRESS_WATCH_ID,
    REASON_TOO_SLOW,
    Filter,
    WatchResponse,
)

History = Callable[[int], Sequence[Event]]
K = TypeVar("K")
"""(start_revision) -> every event at revisions >= start_revision, in revision order
(`MVCCStore.events`); raises `Compacted` when they are no longer all there."""

CurrentRevision = Callable[[], int]

DEFAULT_MAX_BUFFERED_EVENTS = 1024
DEFAULT_MAX_LAG_REVISIONS = 10_000
DEFAULT_MAX_SYNCS_PER_DRAIN = 512
"""etcd's maxWatchersPerSync."""
DEFAULT_PROGRESS_INTERVAL = 600.0
"""etcd's default progress-notify interval: 10 minutes."""


@dataclass(frozen=True, slots=True)
class WatchStats:
    """Counters for metrics. The first five are gauges, the rest only grow."""

    streams: int
    watchers: int
    """Watches that still get events: synced + unsynced."""
    synced: int
    unsynced: int
    buffered_events: int
    events_sent: int
    responses_sent: int
    moved_unsynced: int
    """Times a synced watcher's buffer was full and it was moved aside."""
    slow_cancelled: int
    compacted_cancelled: int
    progress_sent: int


class _State(Enum):
    SYNCED = "synced"
    UNSYNCED = "unsynced"
    CLOSING = "closing"
    """Cancelled by the hub: its buffered events, then its `terminal`, still to send."""


class _Watcher:
    __slots__ = (
        "buf",
        "buffered",
        "id",
        "idle",
        "key",
        "lag_base",
        "next_rev",
        "no_delete",
        "no_put",
        "prev_kv",
        "progress_notify",
        "range_end",
        "shape_key",
        "state",
        "terminal",
    )

    def __init__(
        self,
        watch_id: int,
        key: bytes,
        range_end: bytes,
        filters: Collection[Filter],
        prev_kv: bool,
        progress_notify: bool,
        next_rev: int,
    ) -> None:
        self.id = watch_id
        self.key = key
        self.range_end = range_end
        self.no_put = Filter.NOPUT in filters
        self.no_delete = Filter.NODELETE in filters
        self.prev_kv = prev_kv
        self.shape_key = (self.no_put, self.no_delete, prev_kv)
        """Watchers with equal shape keys get the same events shaped the same way."""
        self.progress_notify = progress_notify
        self.next_rev = next_rev
        """etcd's minRev: every event this watch wants below it is buffered or sent
        (for a synced watcher it only moves when events are buffered)."""
        self.state = _State.SYNCED
        self.buf: deque[tuple[int, tuple[Event, ...]]] = deque()
        self.buffered = 0
        self.lag_base = 0
        """The store revision when it last became unsynced: lag is counted from there
        (or from next_rev, once past it), not from the history it asked to replay."""
        self.idle = True
        """No events sent since the last progress tick (etcd's sws.progress[id])."""
        self.terminal: WatchResponse | None = None

    def matches(self, key: bytes) -> bool:
        return in_range(key, self.key, self.range_end)

    def shape(self, events: Iterable[Event], bare: dict[int, Event]) -> tuple[Event, ...]:
        """The events as this watch gets them: filtered, prev_kv only if asked for
        (`bare` caches the stripped copies, shared by watchers)."""
        out: list[Event] = []
        for ev in events:
            if self.no_put if ev.type is EventType.PUT else self.no_delete:
                continue
            if self.prev_kv or ev.prev_kv is None:
                out.append(ev)
            else:
                b = bare.get(id(ev))
                if b is None:
                    b = bare[id(ev)] = replace(ev, prev_kv=None)
                out.append(b)
        return tuple(out)


def _leave(groups: dict[K, dict[_Watcher, None]], key: K, w: _Watcher) -> None:
    group = groups[key]
    del group[w]
    if not group:
        del groups[key]


class _Budget:
    """Events one drain may still send; the first revision always goes, whatever its
    size, so that a revision larger than the budget cannot stall a watch."""

    __slots__ = ("left", "sent", "spent")

    def __init__(self, max_events: int) -> None:
        self.left = max_events
        self.sent = 0
        self.spent = False

    def take_all(self, n: int) -> None:
        """Spend `n` (<= left, not spent): what `take` per revision would do."""
        self.sent += n
        self.left -= n
        if self.left <= 0:
            self.spent = True

    def take(self, n: int) -> bool:
        if self.spent or (self.sent and n > self.left):
            self.spent = True
            return False
        self.sent += n
        self.left -= n
        if self.left <= 0:
            self.spent = True
        return True


class _HistoryWindow:
    """One read of the history per drain, from the lowest revision any watcher being
    caught up needs (etcd's syncWatchers reads once for all of them)."""

    __slots__ = ("_events", "_from", "_read", "_refused", "_revs", "_starts")

    def __init__(self, read: History, starts: Iterable[int]) -> None:
        self._read = read
        self._starts = sorted(set(starts))
        self._events: Sequence[Event] = ()
        self._revs: list[int] = []
        self._from: int | None = None
        self._refused: tuple[int, Compacted] | None = None
        """(highest start refused, its error): starts up to it are compacted."""

    def since(self, start: int) -> tuple[Sequence[Event], int]:
        """The events and the index of the first one at or after `start`."""
        while True:
            if self._refused is not None and start <= self._refused[0]:
                raise self._refused[1]
            if self._from is not None and self._from <= start:
                return self._events, bisect.bisect_left(self._revs, start)
            lo = self._refused[0] if self._refused is not None else 0
            want = min([s for s in self._starts if s > lo] + [start])
            try:
                events = self._read(want)
            except Compacted as e:
                self._refused = (max(want, e.compact_revision), e)
                continue
            self._events = events
            self._revs = [ev.kv.mod_revision for ev in events]
            self._from = want


class WatchStream:
    """One client stream (etcd's serverWatchStream): many watches multiplexed, with
    ids of their own. Made by `WatchHub.new_stream`."""

    __slots__ = ("_control", "_hub", "_next_id", "_progress_deferred", "_rr", "_watchers", "id")

    def __init__(self, hub: WatchHub, stream_id: int) -> None:
        self._hub = hub
        self.id = stream_id
        self._watchers: dict[int, _Watcher] = {}
        self._control: list[WatchResponse] = []
        """Responses sent ahead of the watchers' events: created, client-cancelled,
        progress notifications (queued only when nothing older is waiting)."""
        self._next_id = 0
        self._progress_deferred = False
        self._rr = 0

    # -- requests ------------------------------------------------------------------

    def create(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        start_revision: int = 0,
        filters: Collection[Filter] = (),
        prev_kv: bool = False,
        progress_notify: bool = False,
        watch_id: int | None = None,
    ) -> int:
        """etcd's WatchCreateRequest. Returns the watch id (-1 when refused) and
        queues the `created` response. `start_revision` 0 watches from the next
        revision; a past one replays history first (a compacted one ends in a
        cancel with the compact revision); a future one waits for it. `watch_id`
        None (or 0, etcd's AutoWatchID) picks the lowest unused id from a counter."""
        return self._hub._create(
            self, key, range_end, start_revision, filters, prev_kv, progress_notify, watch_id
        )

    def cancel(self, watch_id: int) -> bool:
        """etcd's WatchCancelRequest: its buffered events are dropped and a
        `canceled` response queued. False (and no response) for an unknown id."""
        return self._hub._cancel_by_client(self, watch_id)

    def request_progress(self) -> None:
        """etcd's WatchProgressRequest; see `WatchHub.progress`."""
        self._hub.progress(self)

    def drain(self, max_events: int = 1000) -> list[WatchResponse]:
        return self._hub.drain(self, max_events)

    def close(self) -> None:
        self._hub.close_stream(self)

    # -- state ---------------------------------------------------------------------

    @property
    def watch_ids(self) -> list[int]:
        """Ids in use: live watches and cancelled ones whose cancel is not sent yet."""
        return list(self._watchers)

    @property
    def pending(self) -> bool:
        """Whether `drain` has (or may produce) something to send."""
        return bool(self._control) or any(
            w.buf or w.state is not _State.SYNCED for w in self._watchers.values()
        )


class WatchHub:
    def __init__(
        self,
        history: History,
        current_revision: CurrentRevision,
        *,
        max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS,
        max_lag_revisions: int | None = DEFAULT_MAX_LAG_REVISIONS,
        max_syncs_per_drain: int = DEFAULT_MAX_SYNCS_PER_DRAIN,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    ) -> None:
        """`max_buffered_events`: per watcher, between publish and drain (a revision
        is buffered whole; one larger than the bound is taken into an empty buffer).
        `max_lag_revisions`: an unsynced watcher more than this many revisions behind
        is cancelled with `REASON_TOO_SLOW` (None: only compaction cancels it).
        `max_syncs_per_drain`: unsynced watchers caught up per drain call."""
        if max_buffered_events < 1:
            raise ValueError("max_buffered_events must be >= 1")
        if max_lag_revisions is not None and max_lag_revisions < 1:
            raise ValueError("max_lag_revisions must be >= 1 or None")
        if max_syncs_per_drain < 1:
            raise ValueError("max_syncs_per_drain must be >= 1")
        if progress_interval <= 0:
            raise ValueError("progress_interval must be > 0")
        self._history = history
        self._current = current_revision
        self._max_buffered = max_buffered_events
        self._max_lag = max_lag_revisions
        self._max_syncs = max_syncs_per_drain
        self._progress_interval = progress_interval
        self._streams: dict[int, WatchStream] = {}
        self._next_stream_id = 1
        self._synced_keys: dict[bytes, dict[_Watcher, None]] = {}
        """Synced single-key watchers by key (etcd's keyWatchers)."""
        self._synced_ranges: dict[tuple[bytes, bytes], dict[_Watcher, None]] = {}
        """Synced range watchers by (key, range_end): a fan-out of one prefix is one
        group, matched once per event (etcd keeps an interval tree; a scan here)."""
        self._n_synced = 0
        self._unsynced: dict[_Watcher, None] = {}
        self._last_published = 0
        self._next_tick: float | None = None
        self._events_sent = 0
        self._responses_sent = 0
        self._moved_unsynced = 0
        self._slow_cancelled = 0
        self._compacted_cancelled = 0
        self._progress_sent = 0

    # -- streams -------------------------------------------------------------------

    def new_stream(self) -> WatchStream:
        s = WatchStream(self, self._next_stream_id)
        self._next_stream_id += 1
        self._streams[s.id] = s
        return s

    def close_stream(self, stream: WatchStream) -> None:
        """The client went away: every watch of the stream ends, nothing is sent."""
        if self._streams.pop(stream.id, None) is not stream:
            return
        for w in stream._watchers.values():
            self._ungroup(w)
        stream._watchers.clear()
        stream._control.clear()

    def _check(self, stream: WatchStream) -> None:
        if self._streams.get(stream.id) is not stream:
            raise ValueError(f"watch stream {stream.id} is closed or not of this hub")

    # -- create / cancel -----------------------------------------------------------

    def _create(
        self,
        stream: WatchStream,
        key: bytes,
        range_end: bytes,
        start_revision: int,
        filters: Collection[Filter],
        prev_kv: bool,
        progress_notify: bool,
        watch_id: int | None,
    ) -> int:
        self._check(stream)
        if start_revision < 0:
            raise ValueError("start_revision must be >= 0")
        if watch_id is not None and watch_id < 0:
            raise ValueError("watch_id must be >= 0")
        cur = self._current()
        error = ""
        if range_end not in (b"", ALL_KEYS_END) and key >= range_end:
            error = ERR_EMPTY_WATCHER_RANGE
        elif watch_id and watch_id in stream._watchers:
            error = ERR_DUPLICATE_WATCH_ID
        if error:
            stream._control.append(
                WatchResponse(
                    PROGRESS_WATCH_ID, cur, created=True, canceled=True, cancel_reason=error
                )
            )
            return PROGRESS_WATCH_ID
        if not watch_id:
            while stream._next_id in stream._watchers:
                stream._next_id += 1
            watch_id = stream._next_id
            stream._next_id += 1
        w = _Watcher(watch_id, key, range_end, filters, prev_kv, progress_notify, 0)
        stream._watchers[watch_id] = w
        stream._control.append(WatchResponse(watch_id, cur, created=True))
        if start_revision == 0 or start_revision > cur:
            w.next_rev = cur + 1 if start_revision == 0 else start_revision
            self._add_synced(w)
        else:
            w.next_rev = start_revision
            self._add_unsynced(w, cur)
        return watch_id

    def _cancel_by_client(self, stream: WatchStream, watch_id: int) -> bool:
        self._check(stream)
        w = stream._watchers.pop(watch_id, None)
        if w is None:
            return False
        self._ungroup(w)
        w.buf.clear()
        w.buffered = 0
        stream._control.append(WatchResponse(watch_id, self._current(), canceled=True))
        return True

    # -- groups --------------------------------------------------------------------

    def _add_synced(self, w: _Watcher) -> None:
        w.state = _State.SYNCED
        if w.range_end:
            self._synced_ranges.setdefault((w.key, w.range_end), {})[w] = None
        else:
            self._synced_keys.setdefault(w.key, {})[w] = None
        self._n_synced += 1

    def _add_unsynced(self, w: _Watcher, cur: int) -> None:
        w.state = _State.UNSYNCED
        w.lag_base = cur
        self._unsynced[w] = None

    def _ungroup(self, w: _Watcher) -> None:
        if w.state is _State.SYNCED:
            if w.range_end:
                _leave(self._synced_ranges, (w.key, w.range_end), w)
            else:
                _leave(self._synced_keys, w.key, w)
            self._n_synced -= 1
        elif w.state is _State.UNSYNCED:
            del self._unsynced[w]
        w.state = _State.CLOSING

    def _end(self, w: _Watcher, terminal: WatchResponse) -> None:
        """Cancelled by the hub: what it has buffered is still sent, then `terminal`."""
        self._ungroup(w)
        w.terminal = terminal

    # -- the apply path ------------------------------------------------------------

    def publish(self, events: Sequence[Event]) -> None:
        """The events of one or more applied revisions, in revision order. Never
        blocks: a watcher that cannot take a revision is moved aside."""
        if events and not self._synced_ranges and not self._synced_keys:
            # Nobody listens live (the usual case on a busy write path): only the
            # order check and the bookkeeping that later watchers start from.
            first, last = events[0].kv.mod_revision, events[-1].kv.mod_revision
            if first <= self._last_published or last < first:
                raise ValueError(
                    f"revision {first} published after revision {self._last_published}"
                )
            self._last_published = last
            return
        group: list[Event] = []
        rev = 0
        for ev in events:
            r = ev.kv.mod_revision
            if r != rev and group:
                self._publish_revision(rev, group)
                group = []
            rev = r
            group.append(ev)
        if group:
            self._publish_revision(rev, group)

    def _publish_revision(self, rev: int, events: list[Event]) -> None:
        if rev <= self._last_published:
            raise ValueError(f"revision {rev} published after revision {self._last_published}")
        self._last_published = rev
        ranges = self._synced_ranges
        keys = self._synced_keys
        if not ranges and not keys:
            return  # nobody is listening live: the usual case on a busy write path
        hits: list[tuple[dict[_Watcher, None], list[Event]]] = []
        if keys:
            by_key: dict[bytes, list[Event]] = {}
            for ev in events:
                k = ev.kv.key
                if k in keys:
                    by_key.setdefault(k, []).append(ev)
            hits.extend((keys[k], evs) for k, evs in by_key.items())
        for (start, end), group in ranges.items():
            matched = [ev for ev in events if in_range(ev.kv.key, start, end)]
            if matched:
                hits.append((group, matched))
        bare: dict[int, Event] = {}
        max_buffered = self._max_buffered
        too_full: list[_Watcher] = []
        for group, evs in hits:
            shaped_for: dict[tuple[bool, bool, bool], tuple[Event, ...]] = {}
            for w in group:
                if rev < w.next_rev:
                    continue
                shaped = shaped_for.get(w.shape_key)
                if shaped is None:
                    shaped = shaped_for[w.shape_key] = w.shape(evs, bare)
                if shaped:
                    if w.buffered and w.buffered + len(shaped) > max_buffered:
                        too_full.append(w)
                        continue
                    w.buf.append((rev, shaped))
                    w.buffered += len(shaped)
                w.next_rev = rev + 1
        for w in too_full:
            self._ungroup(w)
            w.next_rev = rev
            self._add_unsynced(w, rev)
            self._moved_unsynced += 1

    def restored(self) -> None:
        """The store was replaced by a snapshot: every synced watcher catches up from
        the new store's history (etcd's watchableStore.Restore)."""
        cur = self._current()
        groups = [*self._synced_ranges.values(), *self._synced_keys.values()]
        for w in [w for g in groups for w in g]:
            self._ungroup(w)
            self._add_unsynced(w, cur)
        self._last_published = cur

    # -- the stream side -----------------------------------------------------------

    def drain(self, stream: WatchStream, max_events: int = 1000) -> list[WatchResponse]:
        """The responses ready for `stream`, with about `max_events` events at most
        (whole revisions: at least one is sent). Catches up to `max_syncs_per_drain`
        of its unsynced watchers from history."""
        self._check(stream)
        if max_events < 1:
            raise ValueError("max_events must be >= 1")
        out = stream._control
        stream._control = []
        cur = self._current()
        ws = list(stream._watchers.values())
        if ws:
            k = stream._rr % len(ws)
            ws = ws[k:] + ws[:k]
            stream._rr += 1
        for w in ws:
            if w.state is _State.UNSYNCED:
                self._check_lag(w, cur)
        to_sync = [w for w in ws if w.state is _State.UNSYNCED][: self._max_syncs]
        chosen = set(map(id, to_sync))
        history = _HistoryWindow(self._history, (w.next_rev for w in to_sync if w.next_rev <= cur))
        budget = _Budget(max_events)
        for w in ws:
            if w.buf and w.buffered <= budget.left and not budget.spent:
                # All of it fits (the usual case): one pass, no per-revision checks.
                wid = w.id
                out.extend([WatchResponse(wid, rev, evs) for rev, evs in w.buf])
                budget.take_all(w.buffered)
                w.buf.clear()
                w.buffered = 0
                w.idle = False
            while w.buf and budget.take(len(w.buf[0][1])):
                rev, evs = w.buf.popleft()
                w.buffered -= len(evs)
                w.idle = False
                out.append(WatchResponse(w.id, rev, evs))
            if w.state is _State.UNSYNCED and not w.buf and id(w) in chosen and not budget.spent:
                self._catch_up(w, history, cur, budget, out)
            if w.state is _State.CLOSING and not w.buf:
                assert w.terminal is not None
                out.append(w.terminal)
                del stream._watchers[w.id]
        if stream._progress_deferred and self._all_synced(stream):
            stream._progress_deferred = False
            self._progress_now(stream, cur, out)
        self._events_sent += budget.sent
        self._responses_sent += len(out)
        return out

    def _catch_up(
        self,
        w: _Watcher,
        history: _HistoryWindow,
        cur: int,
        budget: _Budget,
        out: list[WatchResponse],
    ) -> None:
        if w.next_rev <= cur:
            try:
                events, i = history.since(w.next_rev)
            except Compacted as e:
                self._compacted_cancelled += 1
                self._end(
                    w,
                    WatchResponse(w.id, cur, canceled=True, compact_revision=e.compact_revision),
                )
                return
            sent: list[Event] = []
            bare: dict[int, Event] = {}
            n = len(events)
            stopped = False
            while i < n:
                rev = events[i].kv.mod_revision
                if rev > cur:
                    break
                j = i
                group: list[Event] = []
                while j < n and events[j].kv.mod_revision == rev:
                    if w.matches(events[j].kv.key):
                        group.append(events[j])
                    j += 1
                shaped = w.shape(group, bare) if group else ()
                if shaped and not budget.take(len(shaped)):
                    stopped = True
                    break
                sent.extend(shaped)
                w.next_rev = rev + 1
                i = j
            if not stopped:
                w.next_rev = cur + 1
            if sent:
                w.idle = False
                out.append(WatchResponse(w.id, w.next_rev - 1, tuple(sent)))
            if stopped:
                return
        del self._unsynced[w]
        self._add_synced(w)

    def _check_lag(self, w: _Watcher, cur: int) -> None:
        if self._max_lag is not None and cur - max(w.next_rev - 1, w.lag_base) > self._max_lag:
            self._slow_cancelled += 1
            self._end(w, WatchResponse(w.id, cur, canceled=True, cancel_reason=REASON_TOO_SLOW))

    # -- progress ------------------------------------------------------------------

    @staticmethod
    def _all_synced(stream: WatchStream) -> bool:
        return all(w.state is _State.SYNCED and not w.buf for w in stream._watchers.values())

    def _progress_now(self, stream: WatchStream, cur: int, sink: list[WatchResponse]) -> None:
        # etcd 3.5's progressIfSync sends on the first watcher: none, nothing sent.
        if stream._watchers:
            sink.append(WatchResponse(PROGRESS_WATCH_ID, cur))
            self._progress_sent += 1

    def progress(self, stream: WatchStream) -> None:
        """etcd 3.5's RequestProgress: a progress notification with watch id -1 and
        the current revision, queued only once every watch of the stream is synced
        and has sent what it buffered; until then it is deferred, and later drains
        send it as soon as that holds (a request while one is deferred adds none).
        A stream without watches gets none (etcd 3.5 does the same)."""
        self._check(stream)
        if stream._progress_deferred:
            return
        if self._all_synced(stream):
            self._progress_now(stream, self._current(), stream._control)
        else:
            stream._progress_deferred = True

    def tick(self, now: float) -> None:
        """Time passes (any monotonic clock). Cancels unsynced watchers that fell too
        far behind, and every `progress_interval` queues, for each watch created with
        progress_notify that is synced and sent no events since the previous
        interval, a progress notification at the current revision (etcd's
        progressTicker). The first call only starts the interval."""
        cur = self._current()
        for w in list(self._unsynced):
            self._check_lag(w, cur)
        if self._next_tick is None:
            self._next_tick = now + self._progress_interval
            return
        if now < self._next_tick:
            return
        self._next_tick = now + self._progress_interval
        for stream in self._streams.values():
            for w in stream._watchers.values():
                if not w.progress_notify:
                    continue
                if w.idle and w.state is _State.SYNCED and not w.buf:
                    stream._control.append(WatchResponse(w.id, cur))
                    self._progress_sent += 1
                w.idle = True

    # -- metrics -------------------------------------------------------------------

    def stats(self) -> WatchStats:
        buffered = sum(w.buffered for s in self._streams.values() for w in s._watchers.values())
        return WatchStats(
            streams=len(self._streams),
            watchers=self._n_synced + len(self._unsynced),
            synced=self._n_synced,
            unsynced=len(self._unsynced),
            buffered_events=buffered,
            events_sent=self._events_sent,
            responses_sent=self._responses_sent,
            moved_unsynced=self._moved_unsynced,
            slow_cancelled=self._slow_cancelled,
            compacted_cancelled=self._compacted_cancelled,
            progress_sent=self._progress_sent,
        )
