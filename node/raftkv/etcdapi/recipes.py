"""etcd's server-side recipes, `v3lock` (Lock, Unlock) and `v3election` (Campaign,
Proclaim, Leader, Observe, Resign), as etcd builds them on clientv3's concurrency
package: keys `<name>/<lease id in hex>` attached to the caller's lease; the holder
(leader) is the key with the lowest create revision; a waiter waits only until no
key created before its own remains (the key just before it, in effect).

Waiting reads the member's applied state after each applied batch (the watch
signal): a key created before ours that is gone stays gone (a new key gets a newer
revision), so what a member sees once it has applied our own write is final.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from ..kv.mvcc.kv import KeyValue
from ..kv.mvcc.ranges import prefix_end
from ..kv.mvcc.requests import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RangeResponse,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)
from . import convert as C
from . import errors as X
from .proto import v3election_pb2 as el
from .proto import v3lock_pb2 as lk
from .services import EtcdServices

NO_LEADER = X.EtcdError(grpc.StatusCode.UNKNOWN, "election: no leader")
NOT_LEADER = X.EtcdError(grpc.StatusCode.UNKNOWN, "election: not leader")
SESSION_EXPIRED = X.EtcdError(grpc.StatusCode.UNKNOWN, "session expired")
"""concurrency's errors, which etcd's recipe servers return as they are (UNKNOWN)."""


def _key(name: bytes, lease: int) -> bytes:
    return name + b"/" + b"%x" % lease


class Recipes:
    def __init__(self, services: EtcdServices) -> None:
        self.s = services
        self.node = services.node

    # -- store helpers ---------------------------------------------------------------

    def _read(self, req: RangeRequest) -> RangeResponse:
        return self.node.kv.mvcc.range_request(req)

    def _first(self, name: bytes) -> KeyValue | None:
        """The holder (leader): the key under `name/` created first."""
        pfx = name + b"/"
        r = self._read(
            RangeRequest(
                pfx,
                prefix_end(pfx),
                limit=1,
                sort_order=SortOrder.ASCEND,
                sort_target=SortTarget.CREATE,
            )
        )
        return r.kvs[0] if r.kvs else None

    async def _create(self, key: bytes, value: bytes, lease: int) -> tuple[KeyValue, bool]:
        """Put `key` unless it exists; its kv now, and whether this call made it."""
        if lease <= 0:
            raise X.LEASE_NOT_FOUND
        txn = TxnRequest(
            (Compare(key, CompareTarget.CREATE, CompareResult.EQUAL, 0),),
            (PutRequest(key, value, lease),),
            (RangeRequest(key),),
        )
        out = await self.s.propose(txn)
        resp = out.response
        if isinstance(resp, TxnResponse) and not resp.succeeded:
            got = resp.responses[0]
            if isinstance(got, RangeResponse) and got.kvs:
                return got.kvs[0], False
        kv = self._read(RangeRequest(key)).kvs
        if not kv:
            raise SESSION_EXPIRED
        return kv[0], True

    async def _wait_deletes(self, name: bytes, key: bytes, before: int) -> None:
        """Until no key under `name/` created before revision `before` remains;
        SESSION_EXPIRED if our own `key` goes first (its lease ended)."""
        pfx = name + b"/"
        signal = self.node.add_watch_waiter()
        try:
            while True:
                signal.clear()
                older = self._read(
                    RangeRequest(
                        pfx,
                        prefix_end(pfx),
                        limit=1,
                        sort_order=SortOrder.DESCEND,
                        sort_target=SortTarget.CREATE,
                        max_create_revision=before - 1,
                    )
                )
                if not older.kvs:
                    break
                if not self._read(RangeRequest(key)).kvs:
                    raise SESSION_EXPIRED
                await signal.wait()
        finally:
            self.node.remove_watch_waiter(signal)
        if not self._read(RangeRequest(key)).kvs:
            raise SESSION_EXPIRED

    async def _delete(self, key: bytes) -> int:
        return (await self.s.propose(DeleteRangeRequest(key))).revision

    # -- v3lock ----------------------------------------------------------------------

    async def lock(self, req: lk.LockRequest, ctx: Any) -> lk.LockResponse:
        key = _key(req.name, req.lease)
        kv, _ = await self._create(key, b"", req.lease)
        try:
            await self._wait_deletes(req.name, key, kv.create_revision)
        except asyncio.CancelledError:
            # The caller gave up: do not leave a waiter's key behind (etcd's Mutex
            # deletes it too).
            await asyncio.shield(self._delete(key))
            raise
        return lk.LockResponse(header=self.s.header(), key=key)

    async def unlock(self, req: lk.UnlockRequest, ctx: Any) -> lk.UnlockResponse:
        return lk.UnlockResponse(header=self.s.header(await self._delete(req.key)))

    # -- v3election ------------------------------------------------------------------

    async def campaign(self, req: el.CampaignRequest, ctx: Any) -> el.CampaignResponse:
        key = _key(req.name, req.lease)
        kv, made = await self._create(key, req.value, req.lease)
        if not made and kv.value != req.value:
            await self.s.propose(PutRequest(key, req.value, req.lease))
        try:
            await self._wait_deletes(req.name, key, kv.create_revision)
        except asyncio.CancelledError:
            await asyncio.shield(self._delete(key))
            raise
        leader = el.LeaderKey(name=req.name, key=key, rev=kv.create_revision, lease=req.lease)
        return el.CampaignResponse(header=self.s.header(), leader=leader)

    def _is_leader(self, leader: el.LeaderKey) -> TxnRequest:
        return TxnRequest(
            (Compare(leader.key, CompareTarget.CREATE, CompareResult.EQUAL, leader.rev),)
        )

    async def proclaim(self, req: el.ProclaimRequest, ctx: Any) -> el.ProclaimResponse:
        ld = req.leader
        txn = TxnRequest(self._is_leader(ld).compare, (PutRequest(ld.key, req.value, ld.lease),))
        out = await self.s.propose(txn)
        if not out.succeeded:
            raise NOT_LEADER
        return el.ProclaimResponse(header=self.s.header(out.revision))

    async def resign(self, req: el.ResignRequest, ctx: Any) -> el.ResignResponse:
        ld = req.leader
        txn = TxnRequest(self._is_leader(ld).compare, (DeleteRangeRequest(ld.key),))
        out = await self.s.propose(txn)
        return el.ResignResponse(header=self.s.header(out.revision))

    async def leader(self, req: el.LeaderRequest, ctx: Any) -> el.LeaderResponse:
        await self.node.linearizable_barrier()
        kv = self._first(req.name)
        if kv is None:
            raise NO_LEADER
        return el.LeaderResponse(header=self.s.header(), kv=C.kv(kv))

    async def observe(self, req: el.LeaderRequest, ctx: Any) -> AsyncIterator[el.LeaderResponse]:
        """Every change of the leader or of its value, in order, from the current
        one on; a gap without a leader sends nothing."""
        await self.node.linearizable_barrier()
        signal = self.node.add_watch_waiter()
        last: tuple[bytes, int] | None = None
        try:
            while not self.node.stopping:
                signal.clear()
                kv = self._first(req.name)
                if kv is not None and (kv.key, kv.mod_revision) != last:
                    last = (kv.key, kv.mod_revision)
                    yield el.LeaderResponse(header=self.s.header(), kv=C.kv(kv))
                    continue
                await signal.wait()
        finally:
            self.node.remove_watch_waiter(signal)
