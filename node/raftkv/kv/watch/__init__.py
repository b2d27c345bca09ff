"""etcd v3.5's watch, sans I/O: a hub of watchers over the MVCC store's events.

The apply path publishes each applied revision's events; each client stream drains
its responses when it can send. Pure and deterministic: no clocks, threads or I/O
(time comes in through `tick`); not wired into the member yet.

    store = MVCCStore()
    hub = WatchHub(store.events, lambda: store.revision)
    stream = hub.new_stream()
    wid = stream.create(b"k", prefix_end(b"k"), prev_kv=True)
    hub.publish(store.put(b"k1", b"v").events)
    stream.drain(100)   # -> [created, WatchResponse(wid, 2, (PUT k1,))]
"""

from .hub import (
    DEFAULT_MAX_BUFFERED_EVENTS,
    DEFAULT_MAX_LAG_REVISIONS,
    DEFAULT_MAX_SYNCS_PER_DRAIN,
    DEFAULT_PROGRESS_INTERVAL,
    CurrentRevision,
    History,
    WatchHub,
    WatchStats,
    WatchStream,
)
from .response import (
    ERR_DUPLICATE_WATCH_ID,
    ERR_EMPTY_WATCHER_RANGE,
    PROGRESS_WATCH_ID,
    REASON_TOO_SLOW,
    Filter,
    WatchResponse,
)

__all__ = [
    "DEFAULT_MAX_BUFFERED_EVENTS",
    "DEFAULT_MAX_LAG_REVISIONS",
    "DEFAULT_MAX_SYNCS_PER_DRAIN",
    "DEFAULT_PROGRESS_INTERVAL",
    "ERR_DUPLICATE_WATCH_ID",
    "ERR_EMPTY_WATCHER_RANGE",
    "PROGRESS_WATCH_ID",
    "REASON_TOO_SLOW",
    "CurrentRevision",
    "Filter",
    "History",
    "WatchHub",
    "WatchResponse",
    "WatchStats",
    "WatchStream",
]
