"""A concurrent register workload against a raftkv cluster that records a checkable history.

Used by the nemesis (tests/nemesis) and by `raftkv verify`. N asyncio clients issue reads,
writes (every value unique in the run), compare-and-swaps and deletes over a small key set
and record each op as a `raftkv.verify.Op`: invocation and completion on `time.monotonic`,
and one of three outcomes (see `raftkv.verify.history`):

- OK: the server answered success, or 412 to a CAS (`cas_failed=True`: an observation).
- FAIL: the op certainly had no effect: a 4xx other than a CAS's 412, a 503 whose code is
  not "indeterminate"/"timeout", or a connection that failed before the request was sent.
- INFO: anything else: a timeout, a connection lost after sending, a 503 "indeterminate",
  a 5xx the contract does not explain. The op may take effect at any time, or never.

Exactly one attempt per op. Each client is an `AsyncClient` over a single endpoint with
`retries=0`, so the client library never retries behind our back: a retry would be a
second attempt whose effect window differs from what we recorded. (The library would reuse
the X-Request-Id, so a retried write would still be applied at most once; one attempt is
simply the easier history to reason about.) Clients are pinned to members round-robin, as in
Jepsen, so a paused or partitioned member keeps its own clients and their failures show up
in the history and the picture instead of being hidden by fail-over.

CAS encoding. raftkv's CAS compares *revisions* (`If-Match: "<rev>"`), the checker's register
compares *values*. A CAS here is: read the key (recorded as its own read op), then
`PUT If-Match: <rev just read>` with a fresh value, recorded as `CAS(expected=value just
read -> new value)`; if the read answered 404 it is `PUT If-None-Match: *`, recorded as
`CAS(expected=absent -> new value)`. This is exact, not an approximation, because every
value written in a run is unique and a revision is the store revision of the write that
produced it: the key's current mod revision is `r` iff the last write to the key is the
one at store revision `r` (each write has its own) iff the current value is the (unique)
value that write stored. So "revision == r" and "value == v" are the same predicate, and
412 means precisely "the value was not v".
(It relies on the read's ETag matching its body; if the server ever paired a value with a
wrong revision, the checker would see a CAS succeed or fail against the wrong value and
report it, which is the behaviour we want.) "Absent" is not unique, but If-None-Match tests
absence directly, so the create-only case needs no uniqueness.

Transports. The op choice, pacing, pinning, values, recording and final reads are written
once, over a `RegisterApi`: `HttpApi` here, and etcd's v3 gRPC API in
tests/support/grpc_workload.py (the nemesis's gRPC run). An API supplies only the
per-op calls and its error classification (`outcome_of` here).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from raftkv.client import (
    AsyncClient,
    Consistency,
    GetResult,
    Indeterminate,
    PreconditionFailed,
    RaftKVError,
    Unavailable,
)
from raftkv.client_ops import Compare
from raftkv.client_ops import Op as TxnOps
from raftkv.verify.history import Op, OpKind, OpStatus, Value

__all__ = [
    "HttpApi",
    "OpMix",
    "Recorder",
    "RegisterApi",
    "WorkloadConfig",
    "final_reads",
    "outcome_of",
    "read_all",
    "run_register_workload",
    "run_workload",
]


@dataclass(frozen=True, slots=True)
class OpMix:
    """Relative weights of the op kinds (a CAS also issues the read it is based on).

    `txn_cas` is a CAS through `POST /v1/txn` comparing the VALUE (values are unique,
    so the compare is exactly the register's) or, for an absent key, CREATE == 0;
    `txn_pair` writes two keys in one txn, recorded as a write to each, both with
    the txn's call and return times."""

    read: float = 0.40
    write: float = 0.22
    cas: float = 0.15
    txn_cas: float = 0.12
    txn_pair: float = 0.06
    delete: float = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadConfig:
    endpoints: Sequence[str]
    """The members' endpoints in the API's form: URLs for `HttpApi`."""
    keys: Sequence[str]
    clients: int = 6
    duration: float = 60.0
    """Seconds; `run_workload`'s stop event may end the run earlier."""
    rate: float | None = None
    """Cap on ops started per second over all clients (None: as fast as answers come)."""
    timeout: float = 1.5
    """Per-request timeout; a write that times out is recorded INFO."""
    consistency: Consistency = "linearizable"
    """Read consistency. "serializable" is not linearizable by design; the nemesis uses it
    to prove the checker catches stale reads."""
    mix: OpMix = field(default_factory=OpMix)
    seed: int = 0
    value_prefix: str = ""
    """Prepended to every written value, e.g. a run id, so values stay unique even across
    runs that share keys."""
    pin: bool = True
    """Pin client i to endpoint i % n; False rotates each client over all endpoints."""
    verify: ssl.SSLContext | bool = True
    """TLS for https endpoints: the clients' httpx `verify` (docs/tls.md; HTTP only)."""


class Recorder:
    """Collects ops with unique ids. Thread-safe, so a fault thread can add probe ops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        self._next_id = 0

    def add(
        self,
        *,
        client: int,
        key: str,
        kind: OpKind,
        call: float,
        ret: float | None,
        status: OpStatus,
        value: Value = None,
        expected: Value = None,
        cas_failed: bool = False,
    ) -> Op:
        with self._lock:
            op = Op(
                id=self._next_id,
                client=client,
                key=key,
                kind=kind,
                call=call,
                ret=ret,
                status=status,
                value=value,
                expected=expected,
                cas_failed=cas_failed,
            )
            self._next_id += 1
            self._ops.append(op)
            return op

    def returned(self, client: int, key: str, kind: OpKind, call: float, **rest: Any) -> Op:
        """`add` an op that returned just now (OK unless `rest` says otherwise)."""
        rest.setdefault("status", OpStatus.OK)
        return self.add(client=client, key=key, kind=kind, call=call, ret=time.monotonic(), **rest)

    def ops(self) -> list[Op]:
        """A snapshot, sorted by invocation time."""
        with self._lock:
            return sorted(self._ops, key=lambda o: (o.call, o.id))

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)


def outcome_of(exc: BaseException) -> OpStatus:
    """FAIL only when the error proves the op had no effect; INFO otherwise."""
    if isinstance(exc, Indeterminate):
        return OpStatus.INFO
    if isinstance(exc, Unavailable):
        # A 503 whose code is not "indeterminate", or a connection that never carried the
        # request (the client maps a sent-then-lost write to Indeterminate).
        return OpStatus.FAIL
    if isinstance(exc, RaftKVError) and 400 <= exc.status < 500:
        return OpStatus.FAIL
    return OpStatus.INFO


def _text(raw: bytes) -> Value:
    """Values we write are ASCII; keep them as str so the history reads well."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


C = TypeVar("C")
"""One API's connection to one member."""
R = TypeVar("R")
"""What that API's read of one present key answers (its value and its revision)."""


class RegisterApi(ABC, Generic[C, R]):
    """The per-op calls of the register workload over one API, and nothing else.

    What differs between the HTTP run and the gRPC run (tests/support/grpc_workload.py)
    is only how an op is sent and how its errors are classified; the op mix, pacing,
    pinning, unique values, the CAS encoding's read-then-swap and the recording are
    `_Worker`'s, shared, so the two histories mean the same thing and one checker judges
    both. Each call is exactly one attempt: an implementation must never retry."""

    rng_label: ClassVar[str] = ""
    """Prefix of each client's random-stream name, so that runs of one seed over two
    APIs draw their own op sequences."""
    read_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    """Errors after which `read_all` tries the next member (anything else propagates)."""

    @abstractmethod
    def connect(self, endpoint: str) -> C:
        """A connection to the member at `endpoint` (opened inside the running loop)."""

    @abstractmethod
    async def close(self, c: C) -> None: ...

    @abstractmethod
    def outcome(self, exc: BaseException) -> OpStatus:
        """FAIL only when `exc` proves the op had no effect; INFO otherwise."""

    @abstractmethod
    async def get(self, c: C, key: str, consistency: Consistency) -> R | None:
        """Read one key (None when absent)."""

    @abstractmethod
    def value(self, r: R) -> bytes:
        """The value of a read's answer."""

    @abstractmethod
    async def put(self, c: C, key: str, value: bytes) -> None: ...

    @abstractmethod
    async def delete(self, c: C, key: str) -> None: ...

    @abstractmethod
    async def cas(self, c: C, key: str, current: R | None, value: bytes) -> bool:
        """Put `value` iff the key's revision is still `current`'s (absent: iff it is
        still absent). False when the comparison failed (an observation, not an error)."""

    @abstractmethod
    async def txn_cas(self, c: C, key: str, current: R | None, value: bytes) -> bool:
        """`cas` in one transaction comparing the VALUE (absent: CREATE == 0)."""

    @abstractmethod
    async def put_all(self, c: C, values: dict[str, bytes]) -> None:
        """Put every key in one transaction."""


class HttpApi(RegisterApi[AsyncClient, GetResult]):
    """raftkv's native HTTP API: an `AsyncClient` over one endpoint with `retries=0`;
    CAS is `If-Match: "<rev>"` (`If-None-Match: *` when absent), 412 a failed compare."""

    read_errors = (RaftKVError,)

    def __init__(self, timeout: float, verify: ssl.SSLContext | bool = True) -> None:
        self.timeout = timeout
        self.verify = verify

    def connect(self, endpoint: str) -> AsyncClient:
        return AsyncClient([endpoint], timeout=self.timeout, retries=0, verify=self.verify)

    async def close(self, c: AsyncClient) -> None:
        await c.aclose()

    def outcome(self, exc: BaseException) -> OpStatus:
        return outcome_of(exc)

    async def get(self, c: AsyncClient, key: str, consistency: Consistency) -> GetResult | None:
        return await c.get(key, consistency=consistency)

    def value(self, r: GetResult) -> bytes:
        return r.value

    async def put(self, c: AsyncClient, key: str, value: bytes) -> None:
        await c.put(key, value)

    async def delete(self, c: AsyncClient, key: str) -> None:
        await c.delete(key)

    async def cas(self, c: AsyncClient, key: str, current: GetResult | None, value: bytes) -> bool:
        try:
            if current is None:
                await c.put(key, value, if_none_match=True)
            else:
                await c.put(key, value, if_match=current.revision)
        except PreconditionFailed:
            return False
        return True

    async def txn_cas(
        self, c: AsyncClient, key: str, current: GetResult | None, value: bytes
    ) -> bool:
        cond = Compare.create(key) == 0 if current is None else Compare.value(key) == current.value
        r = await c.txn().if_(cond).then(TxnOps.put(key, value)).commit()
        return bool(r.succeeded)

    async def put_all(self, c: AsyncClient, values: dict[str, bytes]) -> None:
        await c.txn().then(*(TxnOps.put(k, v) for k, v in values.items())).commit()


class _Pacer:
    """Spreads op starts evenly at `rate` per second over all clients (single event loop)."""

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


class _Worker(Generic[C, R]):
    """One client of the workload: chooses ops, sends each once through `api`, records it."""

    def __init__(
        self,
        idx: int,
        cfg: WorkloadConfig,
        rec: Recorder,
        api: RegisterApi[C, R],
        clients: list[C],
    ) -> None:
        self.idx = idx
        self.cfg = cfg
        self.rec = rec
        self.api = api
        self.clients = clients
        self.rng = random.Random(f"{api.rng_label}{cfg.seed}/{idx}")
        self.seq = 0
        self.turn = 0

    def _client(self) -> C:
        c = self.clients[self.turn % len(self.clients)]
        if not self.cfg.pin:
            self.turn += 1
        return c

    def _record(self, key: str, kind: OpKind, call: float, **rest: Any) -> None:
        """Record an op of this client that returned just now."""
        self.rec.returned(self.idx, key, kind, call, **rest)

    def _value(self) -> str:
        self.seq += 1
        return f"{self.cfg.value_prefix}c{self.idx}.{self.seq}"

    async def _attempt(self, op: Awaitable[bool | None]) -> tuple[OpStatus, bool]:
        """Await one attempt: (its status, whether it was a CAS whose compare failed).
        `op` answers False for a failed compare, None or True otherwise."""
        try:
            answer = await op
        except Exception as exc:
            return self.api.outcome(exc), False
        return OpStatus.OK, answer is False

    async def read(self, c: C, key: str) -> tuple[bool, R | None]:
        call = time.monotonic()
        try:
            r = await self.api.get(c, key, self.cfg.consistency)
        except Exception as exc:  # a failed read has no effect: FAIL and INFO both drop it
            self._record(key, OpKind.READ, call, status=self.api.outcome(exc))
            return False, None
        value = None if r is None else _text(self.api.value(r))
        self._record(key, OpKind.READ, call, status=OpStatus.OK, value=value)
        return True, r

    async def write(self, c: C, key: str) -> None:
        value = self._value()
        call = time.monotonic()
        status, _ = await self._attempt(self.api.put(c, key, value.encode()))
        self._record(key, OpKind.WRITE, call, status=status, value=value)

    async def delete(self, c: C, key: str) -> None:
        call = time.monotonic()
        status, _ = await self._attempt(self.api.delete(c, key))
        self._record(key, OpKind.DELETE, call, status=status)

    async def cas(self, c: C, key: str, *, by_value: bool) -> None:
        """Read the key (recorded as its own read), then swap in a fresh value if it is
        unchanged: by revision (`api.cas`) or by value in a txn (`api.txn_cas`)."""
        ok, current = await self.read(c, key)
        if not ok:
            return
        expected: Value = None if current is None else _text(self.api.value(current))
        value = self._value()
        swap = self.api.txn_cas if by_value else self.api.cas
        call = time.monotonic()
        status, cas_failed = await self._attempt(swap(c, key, current, value.encode()))
        self._record(
            key,
            OpKind.CAS,
            call,
            status=status,
            value=value,
            expected=expected,
            cas_failed=cas_failed,
        )

    async def txn_pair(self, c: C, key: str) -> None:
        other = self.rng.choice([k for k in self.cfg.keys if k != key] or [key])
        if other == key:
            await self.write(c, key)
            return
        values = {key: self._value(), other: self._value()}
        call = time.monotonic()
        status, _ = await self._attempt(
            self.api.put_all(c, {k: v.encode() for k, v in values.items()})
        )
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
            c = self._client()
            if kind == "read":
                await self.read(c, key)
            elif kind == "write":
                await self.write(c, key)
            elif kind == "cas":
                await self.cas(c, key, by_value=False)
            elif kind == "txn_cas":
                await self.cas(c, key, by_value=True)
            elif kind == "txn_pair":
                await self.txn_pair(c, key)
            else:
                await self.delete(c, key)


async def run_register_workload(
    api: RegisterApi[C, R], cfg: WorkloadConfig, rec: Recorder, stop: threading.Event | None
) -> None:
    """`run_workload` over any API (`cfg.endpoints` are that API's endpoints)."""
    if not cfg.endpoints or not cfg.keys or cfg.clients < 1:
        raise ValueError("need at least one endpoint, one key and one client")
    stop = stop or threading.Event()
    per_ep = [api.connect(ep) for ep in cfg.endpoints]
    workers = []
    for i in range(cfg.clients):
        first = i % len(per_ep)
        mine = [per_ep[first]] if cfg.pin else [*per_ep[first:], *per_ep[:first]]
        workers.append(_Worker(i, cfg, rec, api, mine))
    pacer = _Pacer(cfg.rate)
    deadline = time.monotonic() + cfg.duration
    try:
        await asyncio.gather(*(w.run(pacer, deadline, stop) for w in workers))
    finally:
        for c in per_ep:
            await api.close(c)


async def run_workload(
    cfg: WorkloadConfig, rec: Recorder, stop: threading.Event | None = None
) -> None:
    """Run the clients until `cfg.duration` passes or `stop` is set, then wait for the ops
    in flight (each bounded by `cfg.timeout`), so every op invoked is recorded."""
    await run_register_workload(HttpApi(cfg.timeout, cfg.verify), cfg, rec, stop)


async def read_all(
    api: RegisterApi[C, R],
    endpoints: Sequence[str],
    keys: Sequence[str],
    rec: Recorder,
    *,
    client: int = -1,
    deadline_s: float = 30.0,
) -> dict[str, Value]:
    """`final_reads` over any API."""
    out: dict[str, Value] = {}
    deadline = time.monotonic() + deadline_s
    clients = [api.connect(ep) for ep in endpoints]
    try:
        for key in keys:
            turn = 0
            while time.monotonic() < deadline:
                c = clients[turn % len(clients)]
                turn += 1
                call = time.monotonic()
                try:
                    r = await api.get(c, key, "linearizable")
                except api.read_errors:
                    if turn % len(clients) == 0:
                        await asyncio.sleep(0.2)
                    continue
                value = None if r is None else _text(api.value(r))
                rec.returned(client, key, OpKind.READ, call, value=value)
                out[key] = value
                break
    finally:
        for c in clients:
            await api.close(c)
    return out


async def final_reads(
    endpoints: Sequence[str],
    keys: Sequence[str],
    rec: Recorder,
    *,
    client: int = -1,
    timeout: float = 2.0,
    deadline_s: float = 30.0,
    verify: ssl.SSLContext | bool = True,
) -> dict[str, Value]:
    """A linearizable read of every key, trying members in turn until one answers; the
    successful attempt is recorded (a read has no effect, so the failed tries need not
    be). These reads pin down the final state: a lost acknowledged write shows up here
    even if no client happened to read the key after it. Keys not read by the deadline
    are missing from the result."""
    api = HttpApi(timeout, verify)
    return await read_all(api, endpoints, keys, rec, client=client, deadline_s=deadline_s)
