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

Outcomes from gRPC status codes (see `outcome_of`): OK on an answer; FAIL only for
errors that prove the request had no effect (etcd's refusals before proposing, and a
call that never left the client because no connection could be made); INFO for the
rest (timeouts, `request timed out`, a connection lost mid-call): it may take effect
at any time, or never.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from raftkv.etcdapi.proto import kv_pb2
from raftkv.etcdapi.proto import rpc_pb2 as pb
from raftkv.verify.history import OpKind, OpStatus, Value
from raftkv.verify.workload import OpMix, Recorder
from support.etcd_aio import AioEtcd, prefix_end

__all__ = [
    "FAST_RECONNECT",
    "GrpcWorkloadConfig",
    "final_listing",
    "grpc_final_reads",
    "outcome_of",
    "run_grpc_workload",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcWorkloadConfig:
    endpoints: Sequence[str]
    """The members' etcd gRPC endpoints, `host:port`."""
    keys: Sequence[str]
    clients: int = 6
    duration: float = 60.0
    """Seconds; the stop event may end the run earlier."""
    rate: float | None = None
    """Cap on ops started per second over all clients (None: as fast as answers come)."""
    timeout: float = 1.5
    """Per call; a write that times out is recorded INFO."""
    serializable: bool = False
    """Serializable Ranges (not linearizable by design: only to show the checker can fail)."""
    mix: OpMix = field(default_factory=OpMix)
    seed: int = 0
    value_prefix: str = ""


def _text(raw: bytes) -> Value:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


class _Pacer:
    """Spreads op starts evenly at `rate` per second over all clients (one event loop)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 0.0 if not rate else 1.0 / rate
        self._next = time.monotonic()

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(self._next, now)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def channel(endpoint: str) -> AioEtcd:
    return AioEtcd(endpoint, options=FAST_RECONNECT)


class _Worker:
    def __init__(self, idx: int, cfg: GrpcWorkloadConfig, rec: Recorder, kv: AioEtcd) -> None:
        self.idx = idx
        self.cfg = cfg
        self.rec = rec
        self.kv = kv
        self.rng = random.Random(f"grpc/{cfg.seed}/{idx}")
        self.seq = 0

    def _record(self, key: str, kind: OpKind, call: float, **rest: object) -> None:
        self.rec.add(
            client=self.idx,
            key=key,
            kind=kind,
            call=call,
            ret=time.monotonic(),
            **rest,  # type: ignore[arg-type]
        )

    def _value(self) -> str:
        self.seq += 1
        return f"{self.cfg.value_prefix}c{self.idx}.{self.seq}"

    async def read(self, key: str) -> tuple[bool, kv_pb2.KeyValue | None]:
        """A Range of one key; (answered, its kv or None when absent)."""
        call = time.monotonic()
        try:
            r = await self.kv.range(
                pb.RangeRequest(key=key.encode(), serializable=self.cfg.serializable),
                self.cfg.timeout,
            )
        except Exception as exc:  # a failed read has no effect: FAIL and INFO both drop it
            self._record(key, OpKind.READ, call, status=outcome_of(exc))
            return False, None
        kv = r.kvs[0] if r.kvs else None
        self._record(
            key,
            OpKind.READ,
            call,
            status=OpStatus.OK,
            value=None if kv is None else _text(kv.value),
        )
        return True, kv

    async def write(self, key: str) -> None:
        value = self._value()
        call = time.monotonic()
        try:
            await self.kv.put(
                pb.PutRequest(key=key.encode(), value=value.encode()), self.cfg.timeout
            )
            status = OpStatus.OK
        except Exception as exc:
            status = outcome_of(exc)
        self._record(key, OpKind.WRITE, call, status=status, value=value)

    async def delete(self, key: str) -> None:
        call = time.monotonic()
        try:
            await self.kv.delete(pb.DeleteRangeRequest(key=key.encode()), self.cfg.timeout)
            status = OpStatus.OK
        except Exception as exc:
            status = outcome_of(exc)
        self._record(key, OpKind.DELETE, call, status=status)

    async def cas(self, key: str, *, by_value: bool) -> None:
        ok, current = await self.read(key)
        if not ok:
            return
        k = key.encode()
        if current is None:
            cmp = pb.Compare(key=k, target=pb.Compare.CREATE, create_revision=0)
        elif by_value:
            cmp = pb.Compare(key=k, target=pb.Compare.VALUE, value=current.value)
        else:
            cmp = pb.Compare(key=k, target=pb.Compare.MOD, mod_revision=current.mod_revision)
        expected: Value = None if current is None else _text(current.value)
        value = self._value()
        req = pb.TxnRequest(
            compare=[cmp],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=k, value=value.encode()))],
        )
        call = time.monotonic()
        cas_failed = False
        try:
            r = await self.kv.txn(req, self.cfg.timeout)
            status, cas_failed = OpStatus.OK, not r.succeeded
        except Exception as exc:
            status = outcome_of(exc)
        self._record(
            key,
            OpKind.CAS,
            call,
            status=status,
            value=value,
            expected=expected,
            cas_failed=cas_failed,
        )

    async def txn_pair(self, key: str) -> None:
        other = self.rng.choice([k for k in self.cfg.keys if k != key] or [key])
        if other == key:
            await self.write(key)
            return
        values = {key: self._value(), other: self._value()}
        req = pb.TxnRequest(
            success=[
                pb.RequestOp(request_put=pb.PutRequest(key=k.encode(), value=v.encode()))
                for k, v in values.items()
            ]
        )
        call = time.monotonic()
        try:
            await self.kv.txn(req, self.cfg.timeout)
            status = OpStatus.OK
        except Exception as exc:
            status = outcome_of(exc)
        ret = time.monotonic()
        for k, v in values.items():
            self.rec.add(
                client=self.idx,
                key=k,
                kind=OpKind.WRITE,
                call=call,
                ret=ret,
                status=status,
                value=v,
            )

    async def run(self, pacer: _Pacer, deadline: float, stop: threading.Event) -> None:
        m = self.cfg.mix
        kinds = ["read", "write", "cas", "txn_cas", "txn_pair", "delete"]
        weights = [m.read, m.write, m.cas, m.txn_cas, m.txn_pair, m.delete]
        while not stop.is_set():
            await pacer.wait()
            if stop.is_set() or time.monotonic() >= deadline:
                return
            key = self.rng.choice(list(self.cfg.keys))
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "read":
                await self.read(key)
            elif kind == "write":
                await self.write(key)
            elif kind == "cas":
                await self.cas(key, by_value=False)
            elif kind == "txn_cas":
                await self.cas(key, by_value=True)
            elif kind == "txn_pair":
                await self.txn_pair(key)
            else:
                await self.delete(key)


async def run_grpc_workload(
    cfg: GrpcWorkloadConfig, rec: Recorder, stop: threading.Event | None = None
) -> None:
    """Run the clients until `cfg.duration` passes or `stop` is set, then wait for the ops
    in flight (each bounded by `cfg.timeout`), so every op invoked is recorded."""
    if not cfg.endpoints or not cfg.keys or cfg.clients < 1:
        raise ValueError("need at least one endpoint, one key and one client")
    stop = stop or threading.Event()
    chans = [channel(ep) for ep in cfg.endpoints]
    workers = [_Worker(i, cfg, rec, chans[i % len(chans)]) for i in range(cfg.clients)]
    pacer = _Pacer(cfg.rate)
    deadline = time.monotonic() + cfg.duration
    try:
        await asyncio.gather(*(w.run(pacer, deadline, stop) for w in workers))
    finally:
        for c in chans:
            await c.close()


async def grpc_final_reads(
    endpoints: Sequence[str],
    keys: Sequence[str],
    rec: Recorder,
    *,
    client: int = -1,
    timeout: float = 2.0,
    deadline_s: float = 30.0,
) -> dict[str, Value]:
    """A linearizable Range of every key, trying members in turn until one answers; the
    answer is recorded (see `raftkv.verify.workload.final_reads`, whose HTTP twin this
    is). Keys not read by the deadline are missing from the result."""
    out: dict[str, Value] = {}
    deadline = time.monotonic() + deadline_s
    chans = [channel(ep) for ep in endpoints]
    try:
        for key in keys:
            turn = 0
            while time.monotonic() < deadline:
                c = chans[turn % len(chans)]
                turn += 1
                call = time.monotonic()
                try:
                    r = await c.range(pb.RangeRequest(key=key.encode()), timeout)
                except grpc.aio.AioRpcError:
                    if turn % len(chans) == 0:
                        await asyncio.sleep(0.2)
                    continue
                value = _text(r.kvs[0].value) if r.kvs else None
                rec.add(
                    client=client,
                    key=key,
                    kind=OpKind.READ,
                    call=call,
                    ret=time.monotonic(),
                    status=OpStatus.OK,
                    value=value,
                )
                out[key] = value
                break
    finally:
        for c in chans:
            await c.close()
    return out


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
