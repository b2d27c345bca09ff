"""What a watch stream hands its client: etcd's `WatchResponse`, the create filters,
the ids and the cancel reasons (etcd v3.5 wording where etcd has one)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from raftkv.kv.mvcc.kv import Event

PROGRESS_WATCH_ID = -1
"""etcd's `clientv3.InvalidWatchID`: the watch id of a progress notification sent
for a RequestProgress (it speaks for every watch of the stream), and of the answer
to a create that failed."""

ERR_DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream"
ERR_EMPTY_WATCHER_RANGE = "mvcc: watcher range is empty"
REASON_TOO_SLOW = "raftkv: watcher fell too far behind the store and was cancelled"


class Filter(IntEnum):
    """etcd's `WatchCreateRequest.FilterType`: which events a watch does not want."""

    NOPUT = 0
    NODELETE = 1


@dataclass(slots=True)
class WatchResponse:
    """etcd's `pb.WatchResponse` (the header reduced to its revision; no fragments).
    Treat it as immutable; it is not frozen only because a fan-out builds one per
    watcher per revision, and a frozen dataclass's `__init__` costs three times as
    much.

    - `created`: the answer to a create (`watch_id` -1 and `canceled` when refused,
      with `cancel_reason`);
    - events: whole revisions, in revision order, never a revision split in two;
    - `canceled`: the watch ended; with `compact_revision` > 0 because the revisions
      it still needed were compacted (resume from a newer revision), with
      `cancel_reason` when the server gave up on it, with neither when the client
      cancelled it;
    - a progress notification: no events and no flags; `revision` says every event
      up to it has been sent (for `watch_id` -1: on every watch of the stream).

    `revision` of an event response is the revision the watch is known complete to:
    the events' own revision for live events, the store revision when a catch-up
    from history reached the present, the last revision scanned when it stopped
    short (so resuming from `revision + 1` never skips an event).
    """

    watch_id: int
    revision: int
    events: tuple[Event, ...] = ()
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""

    @property
    def is_progress_notify(self) -> bool:
        """clientv3's `IsProgressNotify`."""
        return (
            not self.events
            and not self.canceled
            and not self.created
            and self.compact_revision == 0
            and self.revision != 0
        )
