"""The space quota's arithmetic (etcd's `--quota-backend-bytes`): what a request
costs, which requests take space at all, and the running estimate of the state
machine's size that the member checks every write against (`server.node`). When a
write would exceed the quota, the member raises etcd's NOSPACE alarm
(`kv.alarm`)."""

from __future__ import annotations

from collections.abc import Iterable

from .mvcc.kv import Event
from .mvcc.requests import PutRequest, TxnRequest
from .proposal import LeaseGrantRequest

DEFAULT_QUOTA_BYTES = 2 << 30
"""etcd's DefaultQuotaBytes (2 GiB): what `--quota-backend-bytes 0` means."""

EVENT_OVERHEAD = 32
"""Bytes a kept key version costs in a snapshot beyond its key and value (measured:
about 21 for a put; rounded up so that the estimate errs high, and an estimate over
the quota is checked against an exact measure before anything is refused)."""


def consumes_space(body: object) -> bool:
    """What etcd's capped applier refuses: a put, a txn with a put in a branch (at any
    depth: etcd counts only the top level, but a nested put grows the store just the
    same), a lease grant."""
    if isinstance(body, PutRequest):
        return True
    if isinstance(body, TxnRequest):
        return any(consumes_space(op) for op in (*body.success, *body.failure))
    return isinstance(body, LeaseGrantRequest)


def cost(body: object) -> int:
    """Bytes a request may add (etcd's quota `Cost`): a put's key and value, the
    larger branch of a txn, a lease grant's small record."""
    if isinstance(body, PutRequest):
        return len(body.key) + len(body.value) + EVENT_OVERHEAD
    if isinstance(body, TxnRequest):
        return max(
            sum(cost(op) for op in body.success),
            sum(cost(op) for op in body.failure),
        )
    return EVENT_OVERHEAD if consumes_space(body) else 0


class SpaceEstimate:
    """A running estimate of the state machine's snapshot size (what `dbSize`
    reports), so that the quota check on every write is an addition, not a
    serialisation: the size last measured (`rebase`) plus what every applied change
    since added. Compaction is not subtracted (it errs high until the next measure),
    so the member measures exactly before it refuses anything."""

    __slots__ = ("base", "growth")

    def __init__(self, base: int = 0) -> None:
        self.base = base
        self.growth = 0

    @property
    def bytes(self) -> int:
        return self.base + self.growth

    def grow(self, events: Iterable[Event]) -> None:
        g = 0
        for e in events:
            kv = e.kv
            g += len(kv.key) + len(kv.value) + EVENT_OVERHEAD
        self.growth += g

    def rebase(self, measured: int, growth_at_capture: int) -> None:
        """`measured` is the size of the state captured when `growth` was
        `growth_at_capture`; what was applied since stays counted."""
        self.base = measured
        self.growth -= growth_at_capture
