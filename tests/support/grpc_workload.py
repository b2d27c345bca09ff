"""The register workload of `raftkv.verify.workload`, sent through etcd's v3 gRPC API
(the members' etcd ports) instead of the native HTTP API, recorded in the same history
format (`raftkv.verify.Op` through a `Recorder`) so that the same checker judges it.

Same shape as the HTTP workload: N asyncio clients pinned to members round-robin, one
attempt per op (support.etcd_aio never retries), unique values, a small key set, and
the same mix (`OpMix`): linearizable Range, Put, DeleteRange, a CAS, a txn CAS and a
two-key txn.

CAS encoding (etcd's compare-and-swap). `cas`: read the key (recorded as a read), then
a Txn comparing its MOD revision with the one just read (CREATE == 0 when it was absent)
and putting a fresh value; recorded as CAS(expected = value read -> new value),
`cas_failed` when the Txn answered `succeeded: false`. Exact, for the reason the HTTP
workload's If-Match is: values are unique and each write has its own revision, so "mod
revision == r" and "value == the value read at r" are one predicate. `txn_cas` compares
the VALUE itself (CREATE == 0 when absent). `txn_pair` puts two keys in one Txn,
recorded as a write to each with the Txn's times.

Only the per-op calls are here (`GrpcApi`): the op choice, pacing, pinning, values and
recording are `raftkv.verify.workload`'s, shared with the HTTP workload. Run it with
`run_register_workload(GrpcApi(cfg.timeout), cfg, rec, stop)` (a `WorkloadConfig` whose
endpoints are etcd `host:port`s; consistency "serializable" sends serializable Ranges)
and read the final state with `read_all(GrpcApi(2.0), ...)`.

Outcomes from gRPC status codes (see `outcome_of`): OK on an answer; FAIL only for
errors that prove the request had no effect (etcd's refusals before proposing, and a
call that never left the client because no connection could be made); INFO for the
rest (timeouts, `request timed out`, a connection lost mid-call): it may take effect
at any time, or never.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import grpc

from raftkv.client import Consistency
from raftkv.etcdapi.proto import kv_pb2
from raftkv.etcdapi.proto import rpc_pb2 as pb
from raftkv.verify.history import OpStatus
from raftkv.verify.workload import RegisterApi
from support.etcd_aio import AioEtcd, prefix_end

__all__ = [
    "FAST_RECONNECT",
    "GrpcApi",
    "channel",
    "final_listing",
    "outcome_of",
]

#: Channel options for clients of members that get killed and restarted: gRPC's
#: default reconnect backoff grows to minutes, which would keep a client away from a
#: member long after it is back.
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]

#: Refusals etcd (and raftkv's adapter) give before a request is proposed: the request
#: certainly had no effect. UNAVAILABLE's messages that say the same; any other
#: UNAVAILABLE (`request timed out`, a reset connection) may have been committed.
_REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}
_UNAVAILABLE_REFUSED = ("etcdserver: no leader", "etcdserver: leader changed")
#: grpc's own words for a call that was never sent: no connection could be made.
_NOT_SENT = ("failed to connect to all addresses", "Connection refused")


def outcome_of(exc: BaseException) -> OpStatus:
    """FAIL only when the error proves the op had no effect; INFO otherwise.

    `no leader` and `leader changed` are raftkv's no_leader / proposal_dropped /
    leader_transfer_in_progress refusals, the ones the HTTP workload also records as
    FAIL (a 503 whose code is not "indeterminate" or "timeout"); `request timed out`
    is its timeout and indeterminate answers, INFO there too."""
    if not isinstance(exc, grpc.aio.AioRpcError):
        return OpStatus.INFO
    code, details = exc.code(), exc.details() or ""
    if code in _REFUSED:
        return OpStatus.FAIL
    if code is grpc.StatusCode.UNAVAILABLE and (
        details in _UNAVAILABLE_REFUSED or any(w in details for w in _NOT_SENT)
    ):
        return OpStatus.FAIL
    return OpStatus.INFO


def channel(endpoint: str) -> AioEtcd:
    return AioEtcd(endpoint, options=FAST_RECONNECT)


class GrpcApi(RegisterApi[AioEtcd, kv_pb2.KeyValue]):
    """The register workload's calls through etcd's KV service, each one attempt with
    `timeout`; CAS is a Txn comparing MOD (by revision) or VALUE (`txn_cas`)."""

    rng_label = "grpc/"
    read_errors = (grpc.aio.AioRpcError,)

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def connect(self, endpoint: str) -> AioEtcd:
        return channel(endpoint)

    async def close(self, c: AioEtcd) -> None:
        await c.close()

    def outcome(self, exc: BaseException) -> OpStatus:
        return outcome_of(exc)

    async def get(self, c: AioEtcd, key: str, consistency: Consistency) -> kv_pb2.KeyValue | None:
        req = pb.RangeRequest(key=key.encode(), serializable=consistency == "serializable")
        r = await c.range(req, self.timeout)
        return r.kvs[0] if r.kvs else None

    def value(self, r: kv_pb2.KeyValue) -> bytes:
        return bytes(r.value)

    async def put(self, c: AioEtcd, key: str, value: bytes) -> None:
        await c.put(pb.PutRequest(key=key.encode(), value=value), self.timeout)

    async def delete(self, c: AioEtcd, key: str) -> None:
        await c.delete(pb.DeleteRangeRequest(key=key.encode()), self.timeout)

    async def cas(
        self, c: AioEtcd, key: str, current: kv_pb2.KeyValue | None, value: bytes
    ) -> bool:
        return await self._swap(c, key, current, value, by_value=False)

    async def txn_cas(
        self, c: AioEtcd, key: str, current: kv_pb2.KeyValue | None, value: bytes
    ) -> bool:
        return await self._swap(c, key, current, value, by_value=True)

    async def _swap(
        self, c: AioEtcd, key: str, current: kv_pb2.KeyValue | None, value: bytes, by_value: bool
    ) -> bool:
        k = key.encode()
        if current is None:
            cmp = pb.Compare(key=k, target=pb.Compare.CREATE, create_revision=0)
        elif by_value:
            cmp = pb.Compare(key=k, target=pb.Compare.VALUE, value=current.value)
        else:
            cmp = pb.Compare(key=k, target=pb.Compare.MOD, mod_revision=current.mod_revision)
        req = pb.TxnRequest(
            compare=[cmp],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=k, value=value))],
        )
        r = await c.txn(req, self.timeout)
        return bool(r.succeeded)

    async def put_all(self, c: AioEtcd, values: dict[str, bytes]) -> None:
        req = pb.TxnRequest(
            success=[
                pb.RequestOp(request_put=pb.PutRequest(key=k.encode(), value=v))
                for k, v in values.items()
            ]
        )
        await c.txn(req, self.timeout)


async def final_listing(
    endpoints: Sequence[str], prefix: str, *, deadline_s: float = 30.0
) -> tuple[int, dict[str, str]]:
    """One linearizable Range of the prefix through any member that answers: (the store
    revision, key -> value). The watch check's final state."""
    deadline = time.monotonic() + deadline_s
    chans = [channel(ep) for ep in endpoints]
    p = prefix.encode()
    last: BaseException | None = None
    try:
        turn = 0
        while time.monotonic() < deadline:
            c = chans[turn % len(chans)]
            turn += 1
            try:
                r = await c.range(pb.RangeRequest(key=p, range_end=prefix_end(p)), 3.0)
            except grpc.aio.AioRpcError as exc:
                last = exc
                await asyncio.sleep(0.2)
                continue
            return r.header.revision, {kv.key.decode(): kv.value.decode() for kv in r.kvs}
    finally:
        for c in chans:
            await c.close()
    raise TimeoutError(f"no member answered a linearizable Range of {prefix!r}: {last!r}")
