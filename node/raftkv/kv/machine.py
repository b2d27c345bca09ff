"""`StateMachine`: what Raft replicates since the MVCC store -- the MVCC key space
with its history, the leases, and the table of applied request ids -- driven one
committed `Proposal` at a time.

Deterministic: the state after applying a log prefix depends only on that prefix (and
the snapshot it started from). The one input that is not in the log is the clock,
and it only touches leader-local lease expiry times, never replicated state.

Request ids: a proposal with a non-empty id is applied at most once. A repeat (a
client retry of a write whose first attempt did commit) is not applied again; it
answers `replayed` with the revision and outcome the first attempt had. The table is
bounded (FIFO by apply order) and part of the snapshot, so every member evicts the
same ids. Ids a member made up for a client that sent none start with a NUL byte and
are not remembered (nobody can retry them).

Every refusal of the store (a compacted revision, a lease that does not exist, a txn
that writes a key twice, ...) is deterministic: it is the same on every member,
changes nothing, and is the outcome of the request.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import frame
from .alarm import (
    NO_SPACE,
    NO_SPACE_MESSAGE,
    AlarmRequest,
    AlarmResponse,
    Alarms,
    AlarmType,
)
from .lease.errors import LeaseError
from .lease.lessor import DEFAULT_MIN_TTL, Granted, Lessor
from .mvcc.errors import MVCCError
from .mvcc.kv import Event, KeyValue
from .mvcc.requests import (
    CompactResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    TxnRequest,
    TxnResponse,
)
from .mvcc.store import MVCCStore
from .mvcc.txn_check import DEFAULT_MAX_TXN_OPS
from .proposal import (
    Body,
    CompactRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    NoopRequest,
    Proposal,
)
from .quota import SpaceEstimate, consumes_space

EPHEMERAL_ID_PREFIX = b"\x00"
DEFAULT_DEDUP_CAPACITY = 100_000
"""Must be the same on every member (eviction decides whether a late duplicate is
replayed or applied); retries arrive within seconds, and 100k ids cover that."""

_MAGIC = b"RKSM"
_VERSION = 1
_VERSION_ALARMS = 2
"""A snapshot with active alarms: a fifth part, the alarm list. Without alarms the
machine still writes version 1, byte for byte as before, so members that predate
alarms read every snapshot of a cluster that never raised one."""
_LEGACY_MAGIC = b"RKVS"

Clock = Callable[[], float]


class SnapshotError(ValueError):
    """State-machine snapshot bytes are corrupt, truncated or of an unknown format."""

    code = "bad_snapshot"


class ApplyOrderError(RuntimeError):
    """An entry was applied at or below the applied index: the node loop broke the
    apply-in-order invariant. Continuing would double-apply, so this is fatal."""

    code = "apply_order"


@dataclass(frozen=True, slots=True)
class LeaseRevoked:
    revision: int
    deleted: int


Response = (
    PutResponse
    | DeleteRangeResponse
    | TxnResponse
    | CompactResponse
    | Granted
    | LeaseRevoked
    | AlarmResponse
    | None
)


@dataclass(frozen=True, slots=True)
class Failure:
    """A deterministic refusal: the error's stable code and message, plus the
    numbers some codes carry (the compact revision of `compacted`, ...)."""

    code: str
    message: str
    extra: tuple[tuple[str, int], ...] = ()

    @staticmethod
    def of(exc: MVCCError | LeaseError) -> Failure:
        extra = tuple(
            (name, int(getattr(exc, name)))
            for name in ("compact_revision", "revision", "current_revision", "lease", "ttl")
            if isinstance(getattr(exc, name, None), int)
        )
        return Failure(exc.code, str(exc), extra)


REQUEST_ID_CONFLICT = "request_id_conflict"
NO_SPACE_FAILURE = Failure(NO_SPACE, NO_SPACE_MESSAGE)
CORRUPT_FAILURE = Failure("corrupt", "etcdserver: corrupt cluster")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What applying one proposal did. `revision` is the store revision after it (the
    header revision). `response` is None for a no-op, a failure and a replay;
    `failure` is set when the request was refused (nothing changed); `succeeded` is
    a txn's branch (True for everything that is not a txn). A replay repeats the
    first attempt's revision, succeeded flag and failure."""

    revision: int
    response: Response = None
    failure: Failure | None = None
    succeeded: bool = True
    replayed: bool = False
    events: tuple[Event, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.failure is None


_Dedup = tuple[int, int, bool, str, str, tuple[tuple[str, int], ...], tuple[int, ...]]
"""(fingerprint of the request, revision after it, succeeded, failure code, message,
the failure's numbers, the small facts of the answer a retry must get again: a
grant's id and TTL, a revoke's or a delete's count)."""


def _detail(resp: Response) -> tuple[int, ...]:
    if isinstance(resp, Granted):
        return (resp.id, resp.ttl)
    if isinstance(resp, LeaseRevoked):
        return (resp.deleted,)
    if isinstance(resp, DeleteRangeResponse):
        return (resp.deleted,)
    return ()


def _replayed_response(p: Proposal, revision: int, detail: tuple[int, ...]) -> Response:
    """What a retry gets back: the first answer's revision and small facts. Kvs
    (prev_kv, a txn's reads) are not kept, so they are absent."""
    b = p.body
    if isinstance(b, LeaseGrantRequest) and len(detail) == 2:
        return Granted(detail[0], detail[1])
    if isinstance(b, LeaseRevokeRequest) and len(detail) == 1:
        return LeaseRevoked(revision, detail[0])
    if isinstance(b, DeleteRangeRequest) and len(detail) == 1:
        return DeleteRangeResponse(revision, detail[0])
    return None


def _fingerprint(p: Proposal) -> int:
    return zlib.crc32(Proposal(p.body).encode())


class StateMachine:
    __slots__ = (
        "_applied",
        "_clock",
        "_dedup",
        "_dedup_capacity",
        "_dedup_order",
        "alarms",
        "lessor",
        "mvcc",
        "space",
    )

    def __init__(
        self,
        *,
        clock: Clock,
        min_lease_ttl: int = DEFAULT_MIN_TTL,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        dedup_capacity: int = DEFAULT_DEDUP_CAPACITY,
    ) -> None:
        if dedup_capacity < 0:
            raise ValueError("dedup_capacity must be >= 0")
        self._clock = clock
        self.lessor = Lessor(min_ttl=min_lease_ttl)
        self.mvcc = MVCCStore(lease_exists=self.lessor.exists, max_txn_ops=max_txn_ops)
        self._dedup: dict[bytes, _Dedup] = {}
        self._dedup_order: deque[bytes] = deque()
        self._dedup_capacity = dedup_capacity
        self._applied = 0
        self.alarms = Alarms()
        """etcd's active alarms (`kv.alarm`): replicated, in the snapshot."""
        self.space = SpaceEstimate()
        """A running estimate of the snapshot size, for the member's quota check;
        not replicated state (not in the snapshot, not in the hash)."""

    # -- reads ---------------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def revision(self) -> int:
        return self.mvcc.revision

    @property
    def dedup_size(self) -> int:
        return len(self._dedup)

    def __len__(self) -> int:
        return len(self.mvcc)

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        return self.mvcc.get(key, revision)

    # -- applying ------------------------------------------------------------------

    def advance(self, index: int) -> None:
        """An entry that is not a request (a configuration change, a new leader's
        empty entry, member attributes) was applied at `index`."""
        self._check_order(index)
        self._applied = index

    def _check_order(self, index: int) -> None:
        if index <= self._applied:
            raise ApplyOrderError(f"entry {index} applied after entry {self._applied}")

    def apply(self, index: int, p: Proposal) -> Outcome:
        self._check_order(index)
        self._applied = index
        rid = p.request_id
        if rid:
            rec = self._dedup.get(rid)
            if rec is not None:
                return self._replay(rec, p)
        out = self._execute(p.body)
        if out.events:
            self.space.grow(out.events)
        if rid and not rid.startswith(EPHEMERAL_ID_PREFIX):
            self._remember(rid, p, out)
        return out

    def _replay(self, rec: _Dedup, p: Proposal) -> Outcome:
        fp, revision, succeeded, code, message, extra, detail = rec
        if fp != _fingerprint(p):
            return Outcome(
                self.mvcc.revision,
                failure=Failure(
                    REQUEST_ID_CONFLICT, "this request id was already used for another request"
                ),
            )
        failure = Failure(code, message, extra) if code else None
        response = None if failure else _replayed_response(p, revision, detail)
        return Outcome(revision, response, failure=failure, succeeded=succeeded, replayed=True)

    def _remember(self, rid: bytes, p: Proposal, out: Outcome) -> None:
        if self._dedup_capacity == 0:
            return
        f = out.failure
        self._dedup[rid] = (
            _fingerprint(p),
            out.revision,
            out.succeeded,
            f.code if f else "",
            f.message if f else "",
            f.extra if f else (),
            _detail(out.response),
        )
        self._dedup_order.append(rid)
        while len(self._dedup_order) > self._dedup_capacity:
            self._dedup.pop(self._dedup_order.popleft(), None)

    def _execute(self, body: Body) -> Outcome:
        try:
            return self._run(body)
        except (MVCCError, LeaseError) as exc:
            return Outcome(self.mvcc.revision, failure=Failure.of(exc))

    def _run(self, body: Body) -> Outcome:
        mvcc = self.mvcc
        if self.alarms.active:
            refused = self._capped(body)
            if refused is not None:
                return Outcome(mvcc.revision, failure=refused)
        if isinstance(body, PutRequest):
            put = mvcc.put_request(body)
            self.lessor.apply_events(put.events)
            return Outcome(put.revision, put, events=put.events)
        if isinstance(body, DeleteRangeRequest):
            dr = mvcc.delete_range_request(body)
            self.lessor.apply_events(dr.events)
            return Outcome(dr.revision, dr, events=dr.events)
        if isinstance(body, TxnRequest):
            txn = mvcc.txn_request(body)
            self.lessor.apply_events(txn.events)
            return Outcome(txn.revision, txn, succeeded=txn.succeeded, events=txn.events)
        if isinstance(body, CompactRequest):
            return Outcome(mvcc.revision, mvcc.compact(body.revision))
        if isinstance(body, LeaseGrantRequest):
            granted = self.lessor.grant(body.id, body.ttl, self._clock())
            return Outcome(mvcc.revision, granted)
        if isinstance(body, LeaseRevokeRequest):
            keys = self.lessor.revoke(body.id)
            dk = mvcc.delete_keys(keys)
            return Outcome(dk.revision, LeaseRevoked(dk.revision, dk.deleted), events=dk.events)
        if isinstance(body, AlarmRequest):
            return Outcome(mvcc.revision, self.alarms.apply(body))
        assert isinstance(body, NoopRequest)
        return Outcome(mvcc.revision)

    def _capped(self, body: Body) -> Failure | None:
        """etcd's appliers under an alarm: CORRUPT refuses every change, NOSPACE
        the writes that take space (puts, txns that put, lease grants); deletes,
        compaction and revokes still work, so that room can be made."""
        if isinstance(body, AlarmRequest | NoopRequest):
            return None
        active = self.alarms.get()
        if any(a.alarm == AlarmType.CORRUPT for a in active):
            return CORRUPT_FAILURE
        if any(a.alarm == AlarmType.NOSPACE for a in active) and consumes_space(body):
            return NO_SPACE_FAILURE
        return None

    # -- leases (leader-local time) ------------------------------------------------

    def promote(self, extend: float) -> None:
        self.lessor.promote(self._clock(), extend=extend)

    def demote(self) -> None:
        self.lessor.demote()

    def expired_leases(self) -> list[int]:
        return self.lessor.expired(self._clock())

    # -- snapshots -----------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Deterministic bytes of the replicated state: equal machines give equal
        bytes (lease expiry times are leader-local and not included)."""
        return self.snapshot_view()()

    def snapshot_view(self) -> Callable[[], bytes]:
        """The state as of now, and a function that encodes it later on any thread
        (see `MVCCStore.snapshot_view`): the member captures on its loop and encodes
        in its snapshot thread, so a large history does not stall heartbeats."""
        encode_mvcc = self.mvcc.snapshot_view()
        lease_bytes = self.lessor.snapshot()
        applied = self._applied
        order, table = list(self._dedup_order), dict(self._dedup)  # records are tuples
        alarms = self.alarms.encode()

        def encode_later() -> bytes:
            dedup: list[Any] = []
            for rid in order:
                rec = table.get(rid)
                if rec is not None:
                    fp, rev, ok, code, msg, extra, detail = rec
                    flat_extra = [x for pair in extra for x in pair]
                    dedup.append([rid, fp, rev, ok, code, msg, flat_extra, list(detail)])
            parts = [applied, encode_mvcc(), lease_bytes, dedup]
            if alarms:
                return frame.seal(_MAGIC, _VERSION_ALARMS, [*parts, alarms])
            return frame.seal(_MAGIC, _VERSION, parts)

        return encode_later

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's; on SnapshotError nothing
        changes. A snapshot of the store before MVCC (format "RKVS") is converted:
        its keys are put in its order, one revision each, and its request ids are
        forgotten (their results are not MVCC revisions)."""
        if bytes(data[:4]) == _LEGACY_MAGIC:
            self._restore_legacy(data)
            return
        version = _VERSION_ALARMS if bytes(data[4:5]) == bytes((_VERSION_ALARMS,)) else _VERSION
        obj = frame.unseal(data, _MAGIC, version, "state-machine snapshot", SnapshotError)
        parts = 4 if version == _VERSION else 5
        if type(obj) is not list or len(obj) != parts:
            raise SnapshotError(f"state-machine snapshot: expected {parts} parts")
        applied, mvcc_bytes, lease_bytes, dedup = obj[:4]
        try:
            alarms = Alarms.decode(obj[4]) if version == _VERSION_ALARMS else Alarms()
        except ValueError as exc:
            raise SnapshotError(f"state-machine snapshot: {exc}") from exc
        if type(applied) is not int or applied < 0:
            raise SnapshotError("state-machine snapshot: bad applied index")
        if type(mvcc_bytes) is not bytes or type(lease_bytes) is not bytes:
            raise SnapshotError("state-machine snapshot: bad parts")
        table, order = _parse_dedup(dedup)
        lessor = Lessor(min_ttl=self.lessor.min_ttl)
        try:
            lessor.restore(lease_bytes)
            mvcc = MVCCStore(lease_exists=lessor.exists, max_txn_ops=self.mvcc.max_txn_ops)
            mvcc.restore(mvcc_bytes)
        except (MVCCError, LeaseError, ValueError) as exc:
            raise SnapshotError(f"state-machine snapshot: {exc}") from exc
        self.lessor, self.mvcc = lessor, mvcc
        self._dedup, self._dedup_order = table, order
        while len(self._dedup_order) > self._dedup_capacity:
            self._dedup.pop(self._dedup_order.popleft(), None)
        self._applied = applied
        self.alarms = alarms
        self.space = SpaceEstimate(len(data))

    def _restore_legacy(self, data: bytes) -> None:
        from .store import KVStore
        from .store import SnapshotError as LegacyError

        try:
            old = KVStore.from_snapshot(data, dedup_capacity=0)
        except LegacyError as exc:
            raise SnapshotError(str(exc)) from exc
        lessor = Lessor(min_ttl=self.lessor.min_ttl)
        mvcc = MVCCStore(lease_exists=lessor.exists, max_txn_ops=self.mvcc.max_txn_ops)
        for key, value, _ in old.range("", len(old) + 1):
            mvcc.put(key.encode(), value)
        self.lessor, self.mvcc = lessor, mvcc
        self._dedup, self._dedup_order = {}, deque()
        self._applied = old.applied_index
        self.alarms = Alarms()
        self.space = SpaceEstimate(len(data))

    @classmethod
    def from_snapshot(cls, data: bytes, *, clock: Clock | None = None) -> StateMachine:
        sm = cls(clock=clock or _no_clock)
        sm.restore(data)
        return sm


def _no_clock() -> float:
    return 0.0


def _parse_dedup(obj: Any) -> tuple[dict[bytes, _Dedup], deque[bytes]]:
    if type(obj) is not list:
        raise SnapshotError("state-machine snapshot: bad request-id table")
    table: dict[bytes, _Dedup] = {}
    order: deque[bytes] = deque()
    for row in obj:
        if (
            type(row) is not list
            or len(row) != 8
            or type(row[0]) is not bytes
            or type(row[1]) is not int
            or type(row[2]) is not int
            or type(row[3]) is not bool
            or type(row[4]) is not str
            or type(row[5]) is not str
            or type(row[6]) is not list
            or len(row[6]) % 2
            or type(row[7]) is not list
            or not all(type(x) is int for x in row[7])
        ):
            raise SnapshotError("state-machine snapshot: bad request-id row")
        rid, fp, rev, ok, code, msg, flat_extra, detail = row
        pairs = list(zip(flat_extra[::2], flat_extra[1::2], strict=True))
        if not all(type(k) is str and type(v) is int for k, v in pairs):
            raise SnapshotError("state-machine snapshot: bad request-id row")
        table[rid] = (fp, rev, ok, code, msg, tuple(pairs), tuple(detail))
        order.append(rid)
    return table, order


def decode_snapshot(data: bytes) -> StateMachine:
    """A machine restored from snapshot bytes (for verifying backups)."""
    return StateMachine.from_snapshot(data)
