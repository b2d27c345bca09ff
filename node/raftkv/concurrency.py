"""Leases kept alive in the background, and the `Lock` and `Election` recipes of
etcd's `clientv3/concurrency` package, on raftkv's client.

Session: a `Lease` whose keep-alive runs in a thread (`AsyncLease`: a task) every
TTL/3. If a keep-alive answers `lease_not_found` the lease is gone (it expired while
the cluster could not be reached, or someone revoked it): `lost` is set and the
`on_lost` callbacks run, since every key and lock held through it is gone too.
Failures that say nothing about the lease (no leader for a moment, a member down) are
retried every half second: the new leader gives every lease a full TTL again.

Lock and Election (etcd's Mutex and Election, same keys and same waits):

- a contender's key is `<name>/<lease id in hex>`, created with a txn
  "if create_revision(key) == 0 then put(key, lease) else get(key)", so a retry or a
  second contender on the same session finds its own key;
- the owner is the key with the smallest create revision under `<name>/`;
- a waiter watches only the key with the largest create revision below its own, for
  its DELETE, then looks again (no herd: one deletion wakes one waiter);
- `Lock.revision` (the key's create revision) is the fencing token: it grows with
  every new owner, so a resource that remembers the largest token it has seen can
  refuse a late write from a previous owner that lost its lease unawares.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Self

from .client import LeaseNotFound, RaftKVError
from .client_ops import KV, Compare, Op, RangeResult, TxnResult

if TYPE_CHECKING:
    from .client import AsyncClient, Client

RETRY_INTERVAL = 0.5
"""Seconds between keep-alive attempts while they fail (etcd's client: 500 ms)."""


class LockLost(RaftKVError):
    """The session's lease ended (or the key was deleted) before the lock or the
    leadership was taken, or while it was held."""


class NotLeader(RaftKVError):
    """`proclaim` or `resign` by a contender that does not hold the leadership."""


# -- leases -------------------------------------------------------------------------------


class Lease:
    """A granted lease kept alive by a thread (`keepalive=False`: by nobody). Revoked
    by `close()` / the context manager, which deletes its keys. `int(lease)` and
    `lease.id` are its id, for `put(..., lease=...)`."""

    def __init__(self, client: Client, ttl: int, *, id: int = 0, keepalive: bool = True) -> None:
        self._client = client
        granted = client.lease_grant(ttl, id=id)
        self.id = granted.id
        self.ttl = granted.ttl
        self.lost = threading.Event()
        """Set once a keep-alive found the lease gone."""
        self.renewals = 0
        self._callbacks: list[Callable[[Lease], None]] = []
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if keepalive:
            self._thread = threading.Thread(
                target=self._keepalive, name=f"raftkv-lease-{self.id:x}", daemon=True
            )
            self._thread.start()

    def __int__(self) -> int:
        return self.id

    @property
    def interval(self) -> float:
        return max(self.ttl / 3, 0.05)

    def on_lost(self, callback: Callable[[Lease], None]) -> None:
        """Call `callback(lease)` (from the keep-alive thread) when the lease is found
        gone; at once if it already is."""
        self._callbacks.append(callback)
        if self.lost.is_set():
            callback(self)

    def _keepalive(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            try:
                self.keepalive_once()
                wait = self.interval
            except LeaseNotFound:
                return
            except RaftKVError:
                wait = min(self.interval, RETRY_INTERVAL)

    def keepalive_once(self) -> int:
        """Renew now; the TTL. `LeaseNotFound` (and `lost`) once it is gone."""
        try:
            ttl = self._client.lease_keepalive_once(self.id)
        except LeaseNotFound:
            self._mark_lost()
            raise
        self.renewals += 1
        return ttl

    def _mark_lost(self) -> None:
        if self.lost.is_set() or self._closed:
            return
        self.lost.set()
        for cb in self._callbacks:
            cb(self)

    def time_to_live(self, *, keys: bool = False) -> int:
        """Seconds left (-1: gone)."""
        return self._client.lease_time_to_live(self.id, keys=keys).ttl

    def stop_keepalive(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def close(self) -> None:
        """Stop renewing and revoke (its keys are deleted). Idempotent."""
        if self._closed:
            return
        self.stop_keepalive()
        self._closed = True
        with contextlib.suppress(LeaseNotFound):
            self._client.lease_revoke(self.id)

    revoke = close

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLease:
    """The asyncio twin of `Lease`: granted by `await lease.grant()` or on entering
    `async with`, kept alive by a task, revoked by `aclose()` / on exit."""

    def __init__(
        self, client: AsyncClient, ttl: int, *, id: int = 0, keepalive: bool = True
    ) -> None:
        self._client = client
        self._ttl_asked = ttl
        self._id_asked = id
        self._keepalive_on = keepalive
        self.id = 0
        self.ttl = 0
        self.lost = asyncio.Event()
        self.renewals = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __int__(self) -> int:
        return self.id

    @property
    def interval(self) -> float:
        return max(self.ttl / 3, 0.05)

    async def grant(self) -> Self:
        if not self.id:
            g = await self._client.lease_grant(self._ttl_asked, id=self._id_asked)
            self.id, self.ttl = g.id, g.ttl
            if self._keepalive_on:
                self._task = asyncio.create_task(self._keepalive(), name=f"lease-{self.id:x}")
        return self

    async def _keepalive(self) -> None:
        wait = self.interval
        while True:
            await asyncio.sleep(wait)
            try:
                await self.keepalive_once()
                wait = self.interval
            except LeaseNotFound:
                return
            except RaftKVError:
                wait = min(self.interval, RETRY_INTERVAL)

    async def keepalive_once(self) -> int:
        try:
            ttl = await self._client.lease_keepalive_once(self.id)
        except LeaseNotFound:
            if not self._closed:
                self.lost.set()
            raise
        self.renewals += 1
        return ttl

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.id:
            with contextlib.suppress(LeaseNotFound):
                await self._client.lease_revoke(self.id)

    async def __aenter__(self) -> Self:
        return await self.grant()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# -- the recipes' shared steps ----------------------------------------------------------


def _prefix(name: str) -> str:
    if not isinstance(name, str) or not name.strip("/"):
        raise ValueError("a lock or election name is a non-empty string")
    return name.rstrip("/") + "/"


def _own_key(prefix: str, lease_id: int) -> str:
    return f"{prefix}{lease_id:x}"


def _enter(client: Client, key: str, value: bytes, lease_id: int) -> tuple[int, KV | None]:
    """Create the contender's key unless it exists: (its create revision, the existing
    key-value when it was there already)."""
    res: TxnResult = (
        client.txn()
        .if_(Compare.create(key) == 0)
        .then(Op.put(key, value, lease=lease_id))
        .else_(Op.get(key))
        .commit()
    )
    if res.succeeded:
        return res.header.revision, None
    if res.responses and isinstance(res.responses[0], RangeResult) and res.responses[0].kvs:
        kv = res.responses[0].kvs[0]
        return kv.create_revision, kv
    # A replayed txn carries no responses: read the key itself.
    got = client.range(key)
    if not got.kvs:
        raise LockLost("lock_lost", f"{key} vanished while being created", 0)
    return got.kvs[0].create_revision, got.kvs[0]


def _wait_deletes(client: Client, prefix: str, below: int, deadline: float | None) -> bool:
    """Wait until no key under `prefix` has a create revision below `below`, watching
    one key at a time: the newest of the older ones (etcd's waitDeletes). False when
    `deadline` (monotonic) passed first."""
    while True:
        r = client.range(
            prefix,
            prefix=True,
            max_create_revision=below - 1,
            sort_order="DESCEND",
            sort_target="CREATE",
            limit=1,
            keys_only=True,
        )
        if not r.kvs:
            return True
        pred = r.kvs[0]
        # With a deadline, a cluster that stays unreachable ends the wait too
        # (Unavailable) rather than a watch reconnecting forever.
        patience = None if deadline is None else max(deadline - time.monotonic(), 0.1)
        with client.watch(
            pred.key, start_revision=r.header.revision + 1, no_put=True, retry_timeout=patience
        ) as w:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                ev = w.get(timeout=left)
                if ev is not None and ev.type == "DELETE":
                    break


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


# -- Lock -------------------------------------------------------------------------------


class Lock:
    """A distributed mutual-exclusion lock (etcd's concurrency.Mutex).

        with Lock(client, "jobs/nightly") as lock:
            write(resource, fence=lock.revision)

    Without `lease`, each `acquire` makes its own session lease (`ttl` seconds, kept
    alive by a thread) and `release` revokes it; with one, the lock lives on it (and
    dies with it). The holder must watch `lost` (or the lease's): a lock outlives its
    holder's lease only in the holder's mind."""

    def __init__(
        self, client: Client, name: str, *, ttl: int = 60, lease: Lease | None = None
    ) -> None:
        self._client = client
        self.prefix = _prefix(name)
        self._ttl = ttl
        self._given = lease
        self._lease: Lease | None = None
        self.key: str | None = None
        self.revision = 0
        """The fencing token: the lock key's create revision (0 when not held)."""

    @property
    def lease(self) -> Lease | None:
        return self._lease

    @property
    def lost(self) -> threading.Event:
        assert self._lease is not None, "not acquired"
        return self._lease.lost

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for the lock (at most `timeout` seconds: False if not taken by then)."""
        if self.key is not None:
            raise RuntimeError("this Lock is already held; make another to lock again")
        deadline = _deadline(timeout)
        lease = self._given or Lease(self._client, self._ttl)
        self._lease = lease
        key = _own_key(self.prefix, lease.id)
        try:
            rev, _ = _enter(self._client, key, b"", lease.id)
            if not _wait_deletes(self._client, self.prefix, rev, deadline):
                self._abandon(key)
                return False
            if not self._client.range(key).kvs:
                raise LockLost("lock_lost", f"the session of {key} ended while waiting", 0)
        except BaseException:
            self._abandon(key)
            raise
        self.key, self.revision = key, rev
        return True

    def _abandon(self, key: str) -> None:
        with contextlib.suppress(RaftKVError):
            self._client.delete(key)
        if self._given is None and self._lease is not None:
            with contextlib.suppress(RaftKVError):
                self._lease.close()
        self._lease = None

    def release(self) -> None:
        """Delete the lock key (and end the own session). Idempotent."""
        if self.key is None:
            return
        key, self.key, self.revision = self.key, None, 0
        self._abandon(key)

    def is_owner(self) -> bool:
        """Whether the lock key is (still) the oldest under the prefix."""
        if self.key is None:
            return False
        r = self._client.range(
            self.prefix, prefix=True, sort_order="ASCEND", sort_target="CREATE", limit=1
        )
        return bool(r.kvs) and r.kvs[0].key_str == self.key

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- Election ----------------------------------------------------------------------------


class Election:
    """Leader election (etcd's concurrency.Election): `campaign(value)` waits to be
    leader, `proclaim(value)` changes the leader's value, `resign()` steps down;
    `leader()` and `observe()` are for everyone."""

    def __init__(
        self, client: Client, name: str, *, ttl: int = 60, lease: Lease | None = None
    ) -> None:
        self._client = client
        self.prefix = _prefix(name)
        self._ttl = ttl
        self._given = lease
        self._lease: Lease | None = None
        self.key: str | None = None
        self.revision = 0
        """The leader key's create revision while leading (0 otherwise)."""

    @property
    def lease(self) -> Lease | None:
        return self._lease

    def campaign(self, value: bytes | str, timeout: float | None = None) -> bool:
        """Become leader with `value`; False if not within `timeout` seconds."""
        if self.key is not None:
            raise RuntimeError("already the leader; resign first")
        data = value.encode() if isinstance(value, str) else bytes(value)
        deadline = _deadline(timeout)
        lease = self._lease or self._given or Lease(self._client, self._ttl)
        self._lease = lease
        key = _own_key(self.prefix, lease.id)
        try:
            rev, existing = _enter(self._client, key, data, lease.id)
            self.key, self.revision = key, rev
            if existing is not None and existing.value != data:
                self.proclaim(data)
            if not _wait_deletes(self._client, self.prefix, rev, deadline):
                self._step_down()
                return False
            if not self._client.range(key).kvs:
                raise LockLost("lock_lost", f"the session of {key} ended while waiting", 0)
        except BaseException:
            self._step_down()
            raise
        return True

    def proclaim(self, value: bytes | str) -> None:
        """Change the leader's value, only while this contender holds its key."""
        if self.key is None:
            raise NotLeader("not_leader", "not campaigning", 0)
        data = value.encode() if isinstance(value, str) else bytes(value)
        assert self._lease is not None
        res = (
            self._client.txn()
            .if_(Compare.create(self.key) == self.revision)
            .then(Op.put(self.key, data, lease=self._lease.id))
            .commit()
        )
        if not res.succeeded:
            self.key, self.revision = None, 0
            raise NotLeader("not_leader", "the leader key is gone (session ended?)", 0)

    def _step_down(self) -> None:
        if self.key is not None:
            key, rev = self.key, self.revision
            self.key, self.revision = None, 0
            with contextlib.suppress(RaftKVError):
                self._client.txn().if_(Compare.create(key) == rev).then(Op.delete(key)).commit()

    def resign(self) -> None:
        """Step down (delete the key); the session lease stays for a new campaign."""
        self._step_down()

    def close(self) -> None:
        """Resign, and end the own session."""
        self._step_down()
        if self._given is None and self._lease is not None:
            with contextlib.suppress(RaftKVError):
                self._lease.close()
        self._lease = None

    def leader(self) -> KV | None:
        """The current leader's key and value (oldest key under the prefix)."""
        r = self._client.range(
            self.prefix, prefix=True, sort_order="ASCEND", sort_target="CREATE", limit=1
        )
        return r.kvs[0] if r.kvs else None

    def observe(self) -> Generator[KV, None, None]:
        """The leader now (if any), then each change of leader or of its value. Close
        the generator to stop."""
        last: tuple[bytes, int] | None = None
        r = self._client.range(
            self.prefix, prefix=True, sort_order="ASCEND", sort_target="CREATE", limit=1
        )
        with self._client.watch(
            self.prefix, prefix=True, start_revision=r.header.revision + 1
        ) as w:
            kv = r.kvs[0] if r.kvs else None
            while True:
                if kv is not None and (kv.key, kv.mod_revision) != last:
                    last = (kv.key, kv.mod_revision)
                    yield kv
                if w.get() is None:
                    return
                kv = self.leader()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- asyncio --------------------------------------------------------------------------


async def _aenter(client: AsyncClient, key: str, value: bytes, lease_id: int) -> int:
    """`_enter` for AsyncClient: the key's create revision."""
    res: TxnResult = await (
        client.txn()
        .if_(Compare.create(key) == 0)
        .then(Op.put(key, value, lease=lease_id))
        .else_(Op.get(key))
        .commit()
    )
    if res.succeeded:
        return res.header.revision
    if res.responses and isinstance(res.responses[0], RangeResult) and res.responses[0].kvs:
        return res.responses[0].kvs[0].create_revision
    got = await client.range(key)
    if not got.kvs:
        raise LockLost("lock_lost", f"{key} vanished while being created", 0)
    return got.kvs[0].create_revision


async def _await_deletes(client: AsyncClient, prefix: str, below: int) -> None:
    """`_wait_deletes` for AsyncClient (bound it with asyncio.timeout)."""
    while True:
        r = await client.range(
            prefix,
            prefix=True,
            max_create_revision=below - 1,
            sort_order="DESCEND",
            sort_target="CREATE",
            limit=1,
            keys_only=True,
        )
        if not r.kvs:
            return
        w = client.watch(r.kvs[0].key, start_revision=r.header.revision + 1, no_put=True)
        async with w:
            async for ev in w:
                if ev.type == "DELETE":
                    break


class AsyncLock:
    """The asyncio twin of `Lock`: `async with AsyncLock(client, name) as lock:`, or
    `await lock.acquire()` (wrap it in `asyncio.timeout` to bound the wait) and
    `await lock.release()`."""

    def __init__(
        self, client: AsyncClient, name: str, *, ttl: int = 60, lease: AsyncLease | None = None
    ) -> None:
        self._client = client
        self.prefix = _prefix(name)
        self._ttl = ttl
        self._given = lease
        self._lease: AsyncLease | None = None
        self.key: str | None = None
        self.revision = 0

    @property
    def lease(self) -> AsyncLease | None:
        return self._lease

    async def acquire(self) -> None:
        if self.key is not None:
            raise RuntimeError("this AsyncLock is already held; make another to lock again")
        lease = self._given or await AsyncLease(self._client, self._ttl).grant()
        self._lease = lease
        key = _own_key(self.prefix, lease.id)
        try:
            rev = await _aenter(self._client, key, b"", lease.id)
            await _await_deletes(self._client, self.prefix, rev)
            if not (await self._client.range(key)).kvs:
                raise LockLost("lock_lost", f"the session of {key} ended while waiting", 0)
        except BaseException:
            # Cancelled (a timeout) or failed: leave no key behind to block others.
            await asyncio.shield(self._abandon(key))
            raise
        self.key, self.revision = key, rev

    async def _abandon(self, key: str) -> None:
        with contextlib.suppress(RaftKVError):
            await self._client.delete(key)
        if self._given is None and self._lease is not None:
            with contextlib.suppress(RaftKVError):
                await self._lease.aclose()
        self._lease = None

    async def release(self) -> None:
        if self.key is None:
            return
        key, self.key, self.revision = self.key, None, 0
        await self._abandon(key)

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


class AsyncElection:
    """The asyncio twin of `Election`: `await campaign(value)` (bound it with
    asyncio.timeout), `proclaim`, `resign`, `aclose`, `leader()`, and `observe()` as an
    async iterator."""

    def __init__(
        self, client: AsyncClient, name: str, *, ttl: int = 60, lease: AsyncLease | None = None
    ) -> None:
        self._client = client
        self.prefix = _prefix(name)
        self._ttl = ttl
        self._given = lease
        self._lease: AsyncLease | None = None
        self.key: str | None = None
        self.revision = 0

    @property
    def lease(self) -> AsyncLease | None:
        return self._lease

    async def campaign(self, value: bytes | str) -> None:
        if self.key is not None:
            raise RuntimeError("already the leader; resign first")
        data = value.encode() if isinstance(value, str) else bytes(value)
        lease = self._lease or self._given or await AsyncLease(self._client, self._ttl).grant()
        self._lease = lease
        key = _own_key(self.prefix, lease.id)
        try:
            rev = await _aenter(self._client, key, data, lease.id)
            self.key, self.revision = key, rev
            got = await self._client.range(key)
            if got.kvs and got.kvs[0].value != data:
                await self.proclaim(data)
            await _await_deletes(self._client, self.prefix, rev)
            if not (await self._client.range(key)).kvs:
                raise LockLost("lock_lost", f"the session of {key} ended while waiting", 0)
        except BaseException:
            await asyncio.shield(self._step_down())
            raise

    async def proclaim(self, value: bytes | str) -> None:
        if self.key is None:
            raise NotLeader("not_leader", "not campaigning", 0)
        data = value.encode() if isinstance(value, str) else bytes(value)
        assert self._lease is not None
        res: TxnResult = await (
            self._client.txn()
            .if_(Compare.create(self.key) == self.revision)
            .then(Op.put(self.key, data, lease=self._lease.id))
            .commit()
        )
        if not res.succeeded:
            self.key, self.revision = None, 0
            raise NotLeader("not_leader", "the leader key is gone (session ended?)", 0)

    async def _step_down(self) -> None:
        if self.key is not None:
            key, rev = self.key, self.revision
            self.key, self.revision = None, 0
            with contextlib.suppress(RaftKVError):
                await (
                    self._client.txn().if_(Compare.create(key) == rev).then(Op.delete(key)).commit()
                )

    async def resign(self) -> None:
        await self._step_down()

    async def aclose(self) -> None:
        await self._step_down()
        if self._given is None and self._lease is not None:
            with contextlib.suppress(RaftKVError):
                await self._lease.aclose()
        self._lease = None

    async def leader(self) -> KV | None:
        r = await self._client.range(
            self.prefix, prefix=True, sort_order="ASCEND", sort_target="CREATE", limit=1
        )
        return r.kvs[0] if r.kvs else None

    async def observe(self) -> AsyncGenerator[KV, None]:
        """The leader now (if any), then each change of leader or of its value."""
        last: tuple[bytes, int] | None = None
        r = await self._client.range(
            self.prefix, prefix=True, sort_order="ASCEND", sort_target="CREATE", limit=1
        )
        kv = r.kvs[0] if r.kvs else None
        w = self._client.watch(self.prefix, prefix=True, start_revision=r.header.revision + 1)
        async with w:
            if kv is not None:
                last = (kv.key, kv.mod_revision)
                yield kv
            async for _ in w:
                kv = await self.leader()
                if kv is not None and (kv.key, kv.mod_revision) != last:
                    last = (kv.key, kv.mod_revision)
                    yield kv

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = [
    "AsyncElection",
    "AsyncLease",
    "AsyncLock",
    "Election",
    "Lease",
    "Lock",
    "LockLost",
    "NotLeader",
]
