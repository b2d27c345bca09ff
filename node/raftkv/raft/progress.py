"""The leader's view of each follower, and the flow control built on it (etcd's
tracker.Progress): probe one message at a time until the follower's position is known,
then stream optimistically within a bounded window of in-flight appends."""

from __future__ import annotations

from collections import deque

from .types import ProgressState


class Inflights:
    """Last index of each append message sent but not yet acknowledged."""

    __slots__ = ("capacity", "queue")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: deque[int] = deque()

    def full(self) -> bool:
        return len(self.queue) >= self.capacity

    def add(self, last: int) -> None:
        self.queue.append(last)

    def free_le(self, index: int) -> None:
        """The follower acknowledged everything up to `index`."""
        q = self.queue
        while q and q[0] <= index:
            q.popleft()

    def free_first_one(self) -> None:
        """Forget the oldest in-flight append (etcd's FreeFirstOne)."""
        if self.queue:
            self.queue.popleft()

    def count(self) -> int:
        return len(self.queue)

    def reset(self) -> None:
        self.queue.clear()


class Progress:
    __slots__ = (
        "inflights",
        "is_learner",
        "last_active_tick",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "responded",
        "state",
    )

    def __init__(
        self, next_index: int, max_inflight: int, *, learner: bool = False, now: int = 0
    ) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = learner
        self.last_active_tick = now
        self.responded = False
        """Whether the member has answered since this progress was created: a fresh
        progress counts as active for a grace period, but only an answer proves the
        member is really there."""

    # --- activity ----------------------------------------------------------------

    def record_response(self, now: int) -> None:
        """The member answered at tick `now`: it is alive (CheckQuorum, thesis §6.2)."""
        self.last_active_tick = now
        self.responded = True

    def is_active(self, now: int, window: int) -> bool:
        """Heard from (or created) within the last `window` ticks."""
        return now - self.last_active_tick < window

    def is_reachable(self, now: int, window: int) -> bool:
        """Active, and has really answered since this progress was created."""
        return self.responded and self.is_active(now, window)

    # --- flow control --------------------------------------------------------------

    def free_inflights_to(self, index: int) -> None:
        """The follower acknowledged everything up to `index`: those appends are no
        longer in flight, and their slots of the window are free again."""
        self.inflights.free_le(index)

    def heartbeat_responded(self) -> None:
        """A heartbeat answer proves the follower is alive: let the next probe go out,
        and free one slot of a full window, whose appends may all have been lost, so a
        live follower never stays paused forever (etcd frees one slot here too)."""
        self.probe_sent = False
        if self.state == ProgressState.REPLICATE and self.inflights.full():
            self.inflights.free_first_one()

    def _reset(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        # After a snapshot, the follower has at least the snapshot: probe from there.
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def maybe_update(self, index: int) -> bool:
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Back off after a rejection; False if the rejection is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def sent_entries(self, last: int | None) -> None:
        """Record an append just sent; `last` is its last entry's index or None if empty."""
        if self.state == ProgressState.REPLICATE:
            if last is not None:
                self.next = last + 1
                self.inflights.add(last)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True
