"""Everyone waiting on the node loop, by kind, in one registry.

Callers (client writes, linearizable reads, membership changes, leader transfers) add
a future here and await it; the loop resolves or fails it when the Raft core says how
the request ended. Every kind lives in this one object so that `fail_all` (stop,
removal, a failed loop) reaches all of them, and so that a caller that gives up
(timeout, cancellation) takes its future out again with the matching `discard_*`.

The kinds:

- writes: futures by request id (several callers may wait on one id);
- index owners: the request id of the write a leader proposed at each log index, so a
  different entry applied there fails it at once (see `pop_owner`);
- reads: futures waiting for the next ReadIndex request;
- read batches: one ReadIndex request in flight (by context) and its futures;
- reads after apply: batches whose read index is known, waiting for apply to reach it;
- conf changes: one membership change by the log index it was proposed at;
- leader waiters: a predicate over the leader id, resolved when a new leader fits.

Everything runs on the event loop thread; nothing here blocks or awaits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..kv.machine import Outcome
from ..raft import ConfChange
from .errors import ApiError


@dataclass
class ReadBatch:
    """The reads one ReadIndex request answers; `index` is -1 until it is known."""

    futures: list[asyncio.Future[None]]
    index: int = -1

    def resolve(self) -> None:
        for f in self.futures:
            if not f.done():
                f.set_result(None)


@dataclass
class ConfWaiter:
    future: asyncio.Future[None]
    change: ConfChange


LeaderPredicate = Callable[[int], bool]


def _fail(futures: Iterable[asyncio.Future[Any]], err: BaseException) -> None:
    for f in futures:
        if not f.done():
            f.set_exception(err)


class Waiters:
    def __init__(self) -> None:
        self._writes: dict[bytes, list[asyncio.Future[Outcome]]] = {}
        self._owners: dict[int, bytes] = {}
        self._reads: list[asyncio.Future[None]] = []
        self._batches: dict[bytes, ReadBatch] = {}
        self._after_apply: deque[ReadBatch] = deque()
        self._conf: dict[int, ConfWaiter] = {}
        self._leader: list[tuple[LeaderPredicate, asyncio.Future[int]]] = []

    # --- writes ----------------------------------------------------------------------

    def add_write(self, rid: bytes) -> asyncio.Future[Outcome]:
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._writes.setdefault(rid, []).append(fut)
        return fut

    def discard_write(self, rid: bytes, fut: asyncio.Future[Outcome]) -> None:
        waiters = self._writes.get(rid)
        if waiters is None:
            return
        if fut in waiters:
            waiters.remove(fut)
        if not waiters:
            del self._writes[rid]

    def resolve_write(self, rid: bytes, result: Outcome) -> None:
        for f in self._writes.pop(rid, ()):
            if not f.done():
                f.set_result(result)

    def fail_write(self, rid: bytes, err: ApiError) -> None:
        _fail(self._writes.pop(rid, ()), err)

    # --- index owners ----------------------------------------------------------------

    def own(self, first_index: int, rids: Iterable[bytes]) -> None:
        """The writes `rids` were proposed at `first_index`, `first_index + 1`, ..."""
        for i, rid in enumerate(rids):
            self._owners[first_index + i] = rid

    def pop_owner(self, index: int) -> bytes | None:
        return self._owners.pop(index, None) if self._owners else None

    def fail_owners_through(self, index: int, err: ApiError) -> None:
        """Fail the writes proposed at `index` or below (a snapshot covered them)."""
        for idx in [i for i in self._owners if i <= index]:
            self.fail_write(self._owners.pop(idx), err)

    # --- linearizable reads ------------------------------------------------------------

    def add_read(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reads.append(fut)
        return fut

    def discard_read(self, fut: asyncio.Future[None]) -> None:
        """Take a read out wherever it is; drop a batch that no one waits on anymore."""
        if fut in self._reads:
            self._reads.remove(fut)
            return
        for ctx, b in list(self._batches.items()):
            if fut in b.futures:
                b.futures.remove(fut)
                if not b.futures:
                    del self._batches[ctx]
                return
        for b in self._after_apply:
            if fut in b.futures:
                b.futures.remove(fut)
                if not b.futures:
                    self._after_apply.remove(b)
                return

    def has_reads(self) -> bool:
        return bool(self._reads)

    def take_reads(self) -> list[asyncio.Future[None]]:
        """The reads the next ReadIndex request will answer."""
        reads, self._reads = self._reads, []
        return reads

    def start_batch(self, ctx: bytes, futures: list[asyncio.Future[None]]) -> None:
        self._batches[ctx] = ReadBatch(futures)

    def fail_reads(self, futures: Iterable[asyncio.Future[None]], err: ApiError) -> None:
        _fail(futures, err)

    def read_state(self, ctx: bytes, index: int, applied: int) -> None:
        """The ReadIndex request `ctx` is safe to answer once `index` is applied."""
        batch = self._batches.pop(ctx, None)
        if batch is None:
            return
        batch.index = index
        if index <= applied:
            batch.resolve()
        else:
            self._after_apply.append(batch)

    def release_reads(self, applied: int) -> None:
        """Answer the batches whose read index `applied` reached."""
        q = self._after_apply
        while q and q[0].index <= applied:
            q.popleft().resolve()
        if q and any(b.index <= applied for b in q):
            keep: deque[ReadBatch] = deque()
            for b in q:
                if b.index <= applied:
                    b.resolve()
                else:
                    keep.append(b)
            self._after_apply = keep

    # --- membership changes ------------------------------------------------------------

    def add_conf(self, index: int, change: ConfChange) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._conf[index] = ConfWaiter(fut, change)
        return fut

    def discard_conf(self, index: int, fut: asyncio.Future[None]) -> None:
        w = self._conf.get(index)
        if w is not None and w.future is fut:
            del self._conf[index]

    def resolve_conf(self, index: int, applied: ConfChange, mismatch: ApiError) -> None:
        """The change at `index` was applied: it resolves the waiter there when it is
        the change that waiter proposed, and fails it with `mismatch` otherwise."""
        w = self._conf.pop(index, None)
        if w is None or w.future.done():
            return
        if w.change.type == applied.type and w.change.node_id == applied.node_id:
            w.future.set_result(None)
        else:
            w.future.set_exception(mismatch)

    def fail_conf_through(self, index: int, err: ApiError) -> None:
        """Fail the changes proposed at `index` or below: something else was applied."""
        if self._conf:
            for idx in [i for i in self._conf if i <= index]:
                _fail([self._conf.pop(idx).future], err)

    # --- leadership ----------------------------------------------------------------------

    def add_leader(self, pred: LeaderPredicate) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._leader.append((pred, fut))
        return fut

    def discard_leader(self, fut: asyncio.Future[int]) -> None:
        self._leader = [(p, f) for p, f in self._leader if f is not fut]

    def leader_changed(self, leader: int) -> None:
        for pred, fut in list(self._leader):
            if pred(leader) and not fut.done():
                fut.set_result(leader)
        self._leader = [(p, f) for p, f in self._leader if not f.done()]

    # --- all of them -------------------------------------------------------------------

    def fail_all(self, err: ApiError) -> None:
        """Fail every waiter of every kind with `err` and forget them all."""
        writes, self._writes = self._writes, {}
        for futs in writes.values():
            _fail(futs, err)
        self._owners = {}
        reads: list[asyncio.Future[None]] = self.take_reads()
        for b in self._batches.values():
            reads.extend(b.futures)
        for b in self._after_apply:
            reads.extend(b.futures)
        reads.extend(w.future for w in self._conf.values())
        _fail(reads, err)
        self._batches = {}
        self._after_apply = deque()
        self._conf = {}
        leader, self._leader = self._leader, []
        _fail((f for _, f in leader), err)

    def counts(self) -> dict[str, int]:
        """How many waiters of each kind there are (for tests and debugging)."""
        return {
            "writes": sum(len(v) for v in self._writes.values()),
            "owners": len(self._owners),
            "reads": len(self._reads),
            "read_batches": sum(len(b.futures) for b in self._batches.values()),
            "reads_after_apply": sum(len(b.futures) for b in self._after_apply),
            "conf": len(self._conf),
            "leader": len(self._leader),
        }

    def __len__(self) -> int:
        return sum(self.counts().values())
