"""The replicated key-value state machine: committed commands in, results out.

Pure and deterministic: the state after applying a log prefix depends only on that
prefix (and the snapshot it started from), never on clocks, configuration that may
differ between members, or hash seeds. That is what lets every member compute the same
answer for the same committed entry, and lets a snapshot stand in for the prefix.

Semantics (close to etcd v3, without MVCC history):
- a key's revision is the Raft index of the entry that last wrote it; an absent key
  has revision 0, so `if_match=0` means "must not exist";
- a failed precondition changes nothing and reports the key's current revision;
- DELETE of an absent key succeeds with `deleted=False` (etcd answers `deleted: 0`),
  so deletes are idempotent and the API may answer 200 rather than 404;
- a command whose non-empty `request_id` was already applied is not applied again: the
  original result is returned with `replayed=True`. Client retries of a write whose
  first attempt did commit (a timeout, a lost response) therefore never apply twice.
  The table of remembered ids is bounded (FIFO by apply order) and is part of the
  snapshot; its capacity must be the same on every member, because eviction decides
  whether a late duplicate is replayed or applied.
- an id that starts with a NUL byte (`EPHEMERAL_ID_PREFIX`) is one a member made up for
  a client that sent none: nobody can ever retry it, so it is not remembered. It still
  travels in the entry, because the proposing member matches applied entries to its
  waiting requests by id. (Client ids come from an HTTP header, which cannot carry NUL.)
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from typing import Any

import msgpack

from .command import Command, Op
from .sortedkeys import SortedKeys

EPHEMERAL_ID_PREFIX = b"\x00"

DEFAULT_DEDUP_CAPACITY = 100_000
"""A cluster-wide constant in practice (see the module docstring): retries arrive
within seconds, and 100k ids cover that at any plausible write rate."""

_SNAPSHOT_MAGIC = b"RKVS"
_SNAPSHOT_VERSION = 2
"""2: keys in the store's own (insertion) order; 1: keys sorted. Both are read."""
_READABLE_VERSIONS = (1, 2)
_SNAPSHOT_HEADER_LEN = len(_SNAPSHOT_MAGIC) + 1 + 4  # magic, version, crc32
_ENTRY_OVERHEAD = 64
"""Rough per-key bookkeeping bytes (dict slot, tuple, index pointer) for `approx_bytes`."""
_MAX_INDEX = (1 << 64) - 1


class ApplyError(StrEnum):
    """Stable codes; the API maps each to one HTTP status."""

    PRECONDITION_FAILED = "precondition_failed"
    REQUEST_ID_CONFLICT = "request_id_conflict"
    """The request id was already used by a different operation on a different key:
    a client bug. Nothing is applied, and the id's recorded result is kept."""


class ApplyOrderError(RuntimeError):
    """An entry was applied at or below the applied index: the node loop broke the
    apply-in-order invariant. Continuing would double-apply, so this is fatal."""

    code = "apply_order"


class SnapshotError(ValueError):
    """Snapshot bytes are corrupt, truncated or of an unknown format."""

    code = "bad_snapshot"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    ok: bool
    revision: int
    """The write's Raft index when ok; the key's current revision (0 when absent) on a
    failed precondition."""
    error: ApplyError | None = None
    prev_revision: int = 0
    """The key's revision before this command (0 when it did not exist)."""
    deleted: bool = False
    """DELETE only: whether the key existed."""
    replayed: bool = False
    """True when this is the remembered result of an earlier apply of the request id."""


_Dedup = tuple[int, str, bool, int, str | None, int, bool]
"""One remembered result: op, key, then ApplyResult's ok, revision, error, prev_revision,
deleted. A tuple of scalars rather than objects: the garbage collector stops tracking
such tuples, so a full table (100k records) costs a full collection nothing, and a
snapshot packs it without converting anything."""


def _dedup_record(op: Op, key: str, r: ApplyResult) -> _Dedup:
    error = None if r.error is None else r.error.value
    return (int(op), key, r.ok, r.revision, error, r.prev_revision, r.deleted)


def _replayed(rec: _Dedup) -> ApplyResult:
    _, _, ok, revision, error, prev_revision, deleted = rec
    err = None if error is None else ApplyError(error)
    return ApplyResult(ok, revision, err, prev_revision, deleted, replayed=True)


@dataclass(frozen=True, slots=True)
class SnapshotView:
    """A consistent, frozen copy of the store at `applied_index`.

    Taking it costs a few flat copies (pointers only: keys and values are immutable
    and shared), so the apply loop is held up briefly; `serialize()` does the expensive
    part and may run in a worker thread while the store keeps applying.
    """

    applied_index: int
    keys: list[str]
    """In the store's dict order, not sorted: reading the dicts front to back is several
    times faster than looking every key up in sorted order (cache misses), and
    snapshots are frequent while restores are rare (a restore sorts)."""
    values: list[bytes]
    revisions: list[int]
    dedup: dict[bytes, _Dedup]
    """In apply order (oldest first), which decides eviction after a restore."""

    def serialize(self) -> bytes:
        # Parallel arrays of scalars rather than one array per key: packing and
        # unpacking then run in C without creating a container object per key.
        keys, values, revisions = self.keys, self.values, self.revisions
        ded: list[object] = []
        append, extend = ded.append, ded.extend
        for rid, rec in self.dedup.items():
            append(rid)
            extend(rec)
        body = b"".join(
            (
                _array_header(5),
                msgpack.packb(self.applied_index),
                *_packed_array(keys),
                *_packed_array(values),
                *_packed_array(revisions),
                *_packed_array(ded),
            )
        )
        crc = zlib.crc32(body)
        return b"".join(
            (_SNAPSHOT_MAGIC, bytes((_SNAPSHOT_VERSION,)), crc.to_bytes(4, "big"), body)
        )


class KVStore:
    """Single-threaded: the node loop applies, reads and snapshots from one thread (or
    event loop); only `SnapshotView.serialize` is meant to run elsewhere.

    Values and revisions live in two dicts rather than one dict of tuples: snapshots and
    restores then move flat arrays of scalars, and a restore of a million keys creates
    no per-key container objects for the garbage collector to walk.
    """

    __slots__ = (
        "_applied",
        "_bytes",
        "_dedup",
        "_dedup_capacity",
        "_dedup_order",
        "_keys",
        "_revs",
        "_values",
    )

    def __init__(self, *, dedup_capacity: int = DEFAULT_DEDUP_CAPACITY) -> None:
        if dedup_capacity < 0:
            raise ValueError("dedup_capacity must be >= 0")
        self._dedup_capacity = dedup_capacity
        self._values: dict[str, bytes] = {}
        self._revs: dict[str, int] = {}
        self._keys = SortedKeys()
        # A plain dict (insertion order = apply order, since an id is inserted once)
        # copies in well under a millisecond for a snapshot, where an OrderedDict takes
        # ~15 ms for 100k ids; the deque only serves FIFO eviction.
        self._dedup: dict[bytes, _Dedup] = {}
        self._dedup_order: deque[bytes] = deque()
        self._applied = 0
        self._bytes = 0

    # -- reads ---------------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        return self._applied

    @property
    def approx_bytes(self) -> int:
        """Keys (in characters) + values + a fixed overhead per key; for metrics and
        snapshot-size heuristics, not an exact memory figure."""
        return self._bytes

    @property
    def dedup_size(self) -> int:
        return len(self._dedup)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def get(self, key: str) -> tuple[bytes, int] | None:
        """(value, revision) or None."""
        value = self._values.get(key)
        if value is None:
            return None
        return value, self._revs[key]

    def range(
        self, prefix: str = "", limit: int = 100, start_after: str | None = None
    ) -> list[tuple[str, bytes, int]]:
        """Keys starting with `prefix`, ascending, at most `limit` of them, strictly
        after `start_after` when given (pagination: pass the last key of the previous
        page). To learn whether more exist, ask for `limit + 1`."""
        if limit <= 0:
            return []
        if start_after is not None and start_after >= prefix:
            it = self._keys.iter_from(start_after, inclusive=False)
        else:
            it = self._keys.iter_from(prefix)
        values = self._values
        revs = self._revs
        out: list[tuple[str, bytes, int]] = []
        for key in it:
            if not key.startswith(prefix):
                break
            out.append((key, values[key], revs[key]))
            if len(out) >= limit:
                break
        return out

    # -- apply ---------------------------------------------------------------------

    def advance(self, index: int) -> None:
        """Mark `index` applied without a command: empty leader entries, conf changes,
        and committed entries that failed to decode (every member fails them alike).
        Keeps `applied_index` equal to the Raft applied index, which snapshots need."""
        if index <= self._applied:
            raise ApplyOrderError(f"index {index} <= applied {self._applied}")
        self._applied = index

    def apply(self, index: int, cmd: Command) -> ApplyResult:
        if index <= self._applied:
            raise ApplyOrderError(f"index {index} <= applied {self._applied}")
        self._applied = index
        rid = cmd.request_id
        if not rid or rid[:1] == EPHEMERAL_ID_PREFIX:
            return self._execute(index, cmd)
        seen = self._dedup.get(rid)
        if seen is not None:
            if seen[0] != cmd.op or seen[1] != cmd.key:
                return ApplyResult(False, 0, ApplyError.REQUEST_ID_CONFLICT)
            return _replayed(seen)
        result = self._execute(index, cmd)
        if self._dedup_capacity:
            dedup = self._dedup
            dedup[rid] = _dedup_record(cmd.op, cmd.key, result)
            order = self._dedup_order
            order.append(rid)
            if len(order) > self._dedup_capacity:
                del dedup[order.popleft()]
        return result

    def _execute(self, index: int, cmd: Command) -> ApplyResult:
        key = cmd.key
        old = self._values.get(key)
        cur_rev = 0 if old is None else self._revs[key]
        if (cmd.if_none_match and old is not None) or (
            cmd.if_match is not None and cmd.if_match != cur_rev
        ):
            return ApplyResult(False, cur_rev, ApplyError.PRECONDITION_FAILED, cur_rev)
        op = cmd.op
        if op == Op.PUT:
            value = cmd.value
            self._values[key] = value
            self._revs[key] = index
            if old is None:
                self._keys.add(key)
                self._bytes += len(key) + len(value) + _ENTRY_OVERHEAD
            else:
                self._bytes += len(value) - len(old)
            return ApplyResult(True, index, None, cur_rev)
        if op == Op.DELETE:
            if old is None:
                return ApplyResult(True, index, None, 0, deleted=False)
            del self._values[key]
            del self._revs[key]
            self._keys.remove(key)
            self._bytes -= len(key) + len(old) + _ENTRY_OVERHEAD
            return ApplyResult(True, index, None, cur_rev, deleted=True)
        return ApplyResult(True, index, None, 0)  # NOOP

    # -- snapshots -----------------------------------------------------------------

    def snapshot_view(self) -> SnapshotView:
        # Flat copies (pointers only), unlike list(d.items()), allocate no per-record
        # tuples (which can trigger a full GC pass over the whole heap). _values and
        # _revs always gain and lose the same keys together, so their orders agree.
        values, revs = self._values, self._revs
        assert len(values) == len(revs)
        return SnapshotView(
            self._applied,
            list(values),
            list(values.values()),
            list(revs.values()),
            self._dedup.copy(),
        )

    def snapshot(self) -> bytes:
        return self.snapshot_view().serialize()

    @classmethod
    def from_snapshot(cls, data: bytes, *, dedup_capacity: int = DEFAULT_DEDUP_CAPACITY) -> KVStore:
        store = cls(dedup_capacity=dedup_capacity)
        store.restore(data)
        return store

    def restore(self, data: bytes) -> None:
        """Replace the whole state with the snapshot's; all or nothing (on
        `SnapshotError` the store is unchanged)."""
        snap = _parse_snapshot(data)
        order = deque(snap.dedup)
        while len(order) > self._dedup_capacity:
            order.popleft()  # the oldest ids go first, as in apply()
        dedup = snap.dedup
        if len(order) < len(dedup):
            dedup = {rid: dedup[rid] for rid in order}
        self._applied = snap.applied
        self._values = dict(zip(snap.keys, snap.values, strict=True))
        self._revs = dict(zip(snap.keys, snap.revisions, strict=True))
        self._keys = SortedKeys(snap.sorted_keys)
        self._dedup = dedup
        self._dedup_order = order
        self._bytes = (
            sum(map(len, snap.keys)) + sum(map(len, snap.values)) + _ENTRY_OVERHEAD * len(snap.keys)
        )


_PACK_CHUNK = 4096


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _packed_array(items: list[Any]) -> list[bytes]:
    """The bytes of `msgpack.packb(items)`, produced slice by slice: one packb call
    over a whole large list holds the GIL throughout and would stall the event loop
    (this runs in a worker thread) for tens of milliseconds."""
    out = [_array_header(len(items))]
    for i in range(0, len(items), _PACK_CHUNK):
        chunk = items[i : i + _PACK_CHUNK]
        packed: bytes = msgpack.packb(chunk, use_bin_type=True)
        out.append(packed[len(_array_header(len(chunk))) :])
    return out


@dataclass(slots=True)
class _ParsedSnapshot:
    applied: int
    keys: list[str]
    values: list[bytes]
    revisions: list[int]
    dedup: dict[bytes, _Dedup]
    sorted_keys: list[str]


def _is_u64(x: object) -> bool:
    return type(x) is int and 0 <= x <= _MAX_INDEX


def _parse_snapshot(data: bytes) -> _ParsedSnapshot:
    """Check and decode a store snapshot; every malformed input is a SnapshotError
    (a snapshot comes from a peer or a backup file: never trust it)."""
    version, body = _snapshot_body(data)
    try:
        obj = msgpack.unpackb(body, raw=False, use_list=True, max_map_len=0, max_ext_len=0)
    except Exception as exc:
        raise SnapshotError(f"undecodable snapshot: {exc}") from exc
    if type(obj) is not list or len(obj) != 5:
        raise SnapshotError("snapshot body must be a 5-element array")
    applied, keys, values, revisions, ded = obj
    _check_arrays(applied, keys, values, revisions, ded)
    sorted_keys = _check_key_order(version, keys)
    dedup = _parse_dedup(ded)
    return _ParsedSnapshot(applied, keys, values, revisions, dedup, sorted_keys)


def _snapshot_body(data: bytes) -> tuple[int, memoryview]:
    """The format version and the CRC-checked body after the header."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SnapshotError("snapshot must be bytes")
    view = memoryview(data)
    if len(view) < _SNAPSHOT_HEADER_LEN or view[:4] != _SNAPSHOT_MAGIC:
        raise SnapshotError("not a raftkv store snapshot")
    version = view[4]
    if version not in _READABLE_VERSIONS:
        raise SnapshotError(f"unsupported snapshot version {version}")
    body = view[_SNAPSHOT_HEADER_LEN:]
    if zlib.crc32(body) != int.from_bytes(view[5:9], "big"):
        raise SnapshotError("snapshot checksum mismatch")
    return version, body


def _check_arrays(applied: Any, keys: Any, values: Any, revisions: Any, ded: Any) -> None:
    """Shapes and types of the decoded arrays (they are untrusted msgpack)."""
    if not _is_u64(applied):
        raise SnapshotError("malformed applied index")
    if not (
        type(keys) is list
        and type(values) is list
        and type(revisions) is list
        and type(ded) is list
    ):
        raise SnapshotError("malformed snapshot arrays")
    if not len(keys) == len(values) == len(revisions) or len(ded) % 8:
        raise SnapshotError("snapshot arrays disagree in length")
    # Whole-array checks run in C (set/map/min/max) rather than a Python loop per key.
    if keys and (
        set(map(type, keys)) != {str}
        or set(map(type, values)) != {bytes}
        or set(map(type, revisions)) != {int}
    ):
        raise SnapshotError("malformed snapshot entry types")
    if revisions and (min(revisions) < 1 or max(revisions) > applied):
        raise SnapshotError(f"key revision outside 1..{applied}")


def _check_key_order(version: int, keys: list[str]) -> list[str]:
    """The keys in order. Format 1 stores them sorted (strictly ascending also rules
    out duplicates); format 2 stores them in dict order and sorts here."""
    if version == 1:
        if not all(map(str.__lt__, keys, islice(keys, 1, None))):
            raise SnapshotError("snapshot keys are not strictly ascending")
        return keys
    sorted_keys = sorted(keys)
    if not all(map(str.__lt__, sorted_keys, islice(sorted_keys, 1, None))):
        raise SnapshotError("duplicate key in snapshot")
    return sorted_keys


def _parse_dedup(ded: list[Any]) -> dict[bytes, _Dedup]:
    dedup: dict[bytes, _Dedup] = {}
    for i in range(0, len(ded), 8):
        rid, op, key, ok, revision, error, prev_revision, deleted = ded[i : i + 8]
        try:
            if type(rid) is not bytes or not rid or type(key) is not str:
                raise ValueError("bad id or key")
            if type(ok) is not bool or type(deleted) is not bool or type(op) is not int:
                raise ValueError("bad flags")
            if not _is_u64(revision) or not _is_u64(prev_revision):
                raise ValueError("bad revision")
            if error is not None:
                ApplyError(error)  # raises ValueError for an unknown code
            rec = (int(Op(op)), key, ok, revision, error, prev_revision, deleted)
        except (ValueError, TypeError) as exc:
            raise SnapshotError(f"malformed dedup record: {exc}") from exc
        if rid in dedup:
            raise SnapshotError("duplicate request id in snapshot")
        dedup[rid] = rec
    return dedup
