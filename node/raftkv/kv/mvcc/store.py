"""`MVCCStore`: etcd v3.5's multi-version KV store (server/storage/mvcc/kvstore.go and
the apply path of server/etcdserver/txn), pure and deterministic.

Revisions: the store revision starts at 1 (an empty etcd reports header revision 1).
Every call that changes at least one key -- a put, a delete of a present key, a txn
with such writes -- makes all its changes at one new revision, the old one + 1, with
sub-revisions 0, 1, ... in the order of the changes. Reads, deletes that delete
nothing, failed compares and rejected calls change nothing and keep the revision.

Reads at a past revision see the store as it was then, down to the compact revision:
`compact(rev)` forgets what reads at revisions >= rev do not need, after which reads
below rev raise `Compacted`. Reads above the current revision raise `FutureRevision`.

Leases are not kept here: a put with lease != 0 asks the `lease_exists` callable
(none by default: every lease is then unknown), and the kv records the lease id.

No clocks, threads or I/O; one caller at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from . import query, snapshot
from .compare import compare_holds
from .errors import Compacted, FutureRevision, KeyNotFound, LeaseNotFound
from .index import TreeIndex
from .kv import Event, EventType, KeyValue, Revision
from .requests import (
    CompactResponse,
    Compare,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RequestOp,
    ResponseOp,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)
from .txn_check import DEFAULT_MAX_TXN_OPS, check_key, check_put, check_txn

LeaseExists = Callable[[int], bool]


def _no_leases(lease: int) -> bool:
    return False


class MVCCStore:
    __slots__ = (
        "_compact_rev",
        "_current_rev",
        "_index",
        "_kvs",
        "_lease_exists",
        "_live",
        "_max_ops",
    )

    def __init__(
        self,
        *,
        lease_exists: LeaseExists | None = None,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
    ) -> None:
        self._index = TreeIndex()
        self._kvs: dict[Revision, KeyValue] = {}
        """Every kept revision's kv (tombstones too): etcd's backend `key` bucket."""
        self._current_rev = 1
        self._compact_rev = -1
        """etcd's compactMainRev: -1 until the first compaction."""
        self._lease_exists: LeaseExists = lease_exists or _no_leases
        self._max_ops = max_txn_ops
        self._live = 0
        """Keys that exist now (kept as writes happen: counting is a scan)."""

    # -- state ---------------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._current_rev

    @property
    def compact_revision(self) -> int:
        """The revision of the last compaction; -1 before the first (as in etcd)."""
        return self._compact_rev

    @property
    def history_size(self) -> int:
        """Key versions kept (tombstones included): what compaction frees."""
        return len(self._kvs)

    @property
    def max_txn_ops(self) -> int:
        return self._max_ops

    def __len__(self) -> int:
        """Keys that exist now."""
        return self._live

    # -- range ---------------------------------------------------------------------

    def range(
        self,
        key: bytes,
        range_end: bytes = b"",
        *,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: SortOrder = SortOrder.NONE,
        sort_target: SortTarget = SortTarget.KEY,
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeResponse:
        return self.range_request(
            RangeRequest(
                key,
                range_end,
                revision,
                limit,
                keys_only,
                count_only,
                sort_order,
                sort_target,
                min_mod_revision,
                max_mod_revision,
                min_create_revision,
                max_create_revision,
            )
        )

    def range_request(self, req: RangeRequest) -> RangeResponse:
        check_key(req.key)
        return self._range(req, self._current_rev)

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """The key's kv at `revision` (0: now), or None."""
        if revision <= 0 and key:
            # The single-key read of the hot path: one index lookup, no RangeRequest.
            found = self._index.get(key, self._current_rev)
            return None if found is None else self._kvs[found[0]]
        kvs = self.range(key, revision=revision).kvs
        return kvs[0] if kvs else None

    def _range(self, req: RangeRequest, cur_rev: int) -> RangeResponse:
        """etcd's rangeKeys + executeRange, reading as of `cur_rev` (inside a write
        txn: the txn's own changes are visible)."""
        rev = req.revision
        if rev > cur_rev:
            raise FutureRevision(rev, cur_rev)
        if rev <= 0:
            rev = cur_rev
        if rev < self._compact_rev:
            raise Compacted(self._compact_rev)
        if req.count_only:
            return RangeResponse(cur_rev, count=self._index.count(req.key, req.range_end, rev))
        revs, total = self._index.revisions(req.key, req.range_end, rev, query.fetch_limit(req))
        kvs, more = query.finish(req, [self._kvs[r] for r in revs])
        return RangeResponse(cur_rev, tuple(kvs), more, total)

    def _read_kvs(self, key: bytes, range_end: bytes, rev: int) -> list[KeyValue]:
        if not range_end:  # one key (a txn's compare, a put's previous value)
            found = self._index.get(key, rev)
            return [] if found is None else [self._kvs[found[0]]]
        revs, _ = self._index.revisions(key, range_end, rev)
        return [self._kvs[r] for r in revs]

    # -- writes --------------------------------------------------------------------

    def put(
        self,
        key: bytes,
        value: bytes = b"",
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutResponse:
        return self.put_request(PutRequest(key, value, lease, prev_kv, ignore_value, ignore_lease))

    def put_request(self, req: PutRequest) -> PutResponse:
        check_put(req)
        self._check_put_state(req)
        w = _Write(self)
        resp = w.put(req)
        w.commit()
        return resp

    def delete_range(
        self, key: bytes, range_end: bytes = b"", *, prev_kv: bool = False
    ) -> DeleteRangeResponse:
        return self.delete_range_request(DeleteRangeRequest(key, range_end, prev_kv))

    def delete_range_request(self, req: DeleteRangeRequest) -> DeleteRangeResponse:
        check_key(req.key)
        w = _Write(self)
        resp = w.delete_range(req)
        w.commit()
        return resp

    def delete_keys(self, keys: Sequence[bytes]) -> DeleteRangeResponse:
        """Delete each of `keys` that exists, all at one revision, in the order given:
        a lease revoke (etcd deletes a lease's keys in one write txn, however many;
        --max-txn-ops bounds client txns only)."""
        w = _Write(self)
        deleted = 0
        events: list[Event] = []
        for key in keys:
            check_key(key)
            r = w.delete_range(DeleteRangeRequest(key))
            deleted += r.deleted
            events.extend(r.events)
        w.commit()
        return DeleteRangeResponse(self._current_rev, deleted, (), tuple(events))

    def txn(
        self,
        compare: Sequence[Compare] = (),
        success: Sequence[RequestOp] = (),
        failure: Sequence[RequestOp] = (),
    ) -> TxnResponse:
        return self.txn_request(TxnRequest(tuple(compare), tuple(success), tuple(failure)))

    def txn_request(self, req: TxnRequest) -> TxnResponse:
        """All compares (nested txns' too) are evaluated first, against the store as
        it was before the txn; then the chosen ops run in order, reads seeing the
        txn's earlier writes."""
        check_txn(req, self._max_ops)
        path: list[bool] = []
        self._compare_to_path(req, path)
        self._check_txn_state(req, iter(path))
        w = _Write(self)
        resp = w.txn(req, iter(path))
        w.commit()
        return TxnResponse(self._current_rev, resp.succeeded, resp.responses, resp.events)

    def _compare_to_path(self, txn: TxnRequest, path: list[bool]) -> None:
        ok = all(
            compare_holds(c, self._read_kvs(c.key, c.range_end, self._current_rev))
            for c in txn.compare
        )
        path.append(ok)
        for op in txn.success if ok else txn.failure:
            if isinstance(op, TxnRequest):
                self._compare_to_path(op, path)

    def _check_txn_state(self, txn: TxnRequest, path: Iterator[bool]) -> None:
        """etcd's checkTxn: puts and ranges on the chosen path, against the store
        before the txn, so that nothing fails half-way."""
        for op in txn.success if next(path) else txn.failure:
            if isinstance(op, TxnRequest):
                self._check_txn_state(op, path)
            elif isinstance(op, PutRequest):
                self._check_put_state(op)
            elif isinstance(op, RangeRequest) and op.revision != 0:
                if op.revision > self._current_rev:
                    raise FutureRevision(op.revision, self._current_rev)
                if op.revision < self._compact_rev:
                    raise Compacted(self._compact_rev)

    def _check_put_state(self, req: PutRequest) -> None:
        if (req.ignore_value or req.ignore_lease) and not self._read_kvs(
            req.key, b"", self._current_rev
        ):
            raise KeyNotFound()
        if req.lease != 0 and not self._lease_exists(req.lease):
            raise LeaseNotFound(req.lease)

    # -- compaction ----------------------------------------------------------------

    def compact(self, revision: int) -> CompactResponse:
        """Forget history that reads at `revision` or later do not need. Raises
        Compacted when revision <= the compact revision, FutureRevision when it is
        above the current revision. Does not change the store revision."""
        if revision <= self._compact_rev:
            raise Compacted(self._compact_rev)
        if revision > self._current_rev:
            raise FutureRevision(revision, self._current_rev)
        self._compact_rev = revision
        keep = self._index.compact(revision)
        kvs = self._kvs
        for r in [r for r in kvs if r.main <= revision and r not in keep]:
            del kvs[r]
        return CompactResponse(self._current_rev)

    # -- history -------------------------------------------------------------------

    def events(self, start_revision: int) -> list[Event]:
        """Every change at revisions >= start_revision, in revision order, as the
        write calls returned them (for watch catch-up). Raises Compacted when
        start_revision <= the compact revision (those changes are partly gone) and
        FutureRevision when it is above the next revision.

        `_kvs` is in insertion order, which is revision order (compaction only
        deletes), so the changes are read from its end back to `start_revision`:
        the cost is what is returned, not the size of the history."""
        if start_revision <= self._compact_rev:
            raise Compacted(self._compact_rev)
        if start_revision > self._current_rev + 1:
            raise FutureRevision(start_revision, self._current_rev)
        kvs = self._kvs
        revs: list[Revision] = []
        for r in reversed(kvs):
            if r.main < start_revision:
                break
            revs.append(r)
        revs.reverse()
        out: list[Event] = []
        # A key changed twice in one revision (sibling txns: put, then delete) has
        # the earlier change as the later one's prev.
        latest: dict[bytes, KeyValue | None] = {}
        for r in revs:
            kv = kvs[r]
            if kv.key in latest:
                prev = latest[kv.key]
            else:
                found = self._index.get(kv.key, r.main - 1)
                prev = None if found is None else kvs.get(found[0])
            tomb = kv.is_tombstone
            latest[kv.key] = None if tomb else kv
            out.append(Event(EventType.DELETE if tomb else EventType.PUT, kv, prev))
        return out

    # -- snapshots -----------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Deterministic bytes of the whole state, history since the compact
        revision included: equal stores give equal bytes."""
        return self.snapshot_view()()

    def snapshot_view(self) -> Callable[[], bytes]:
        """`snapshot()` in two steps: the state is captured now (cheap), and the
        returned function encodes it later, on any thread, while the store goes on."""
        return snapshot.capture(self._current_rev, self._compact_rev, self._index, self._kvs)

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's; on SnapshotError the store is
        unchanged. Configuration (lease_exists, max_txn_ops) is kept."""
        state = snapshot.decode(data)
        self._current_rev = state.current_rev
        self._compact_rev = state.compact_rev
        self._index = state.index
        self._kvs = state.kvs
        self._live = state.index.count(b"\x00", b"\x00", state.current_rev)

    @classmethod
    def from_snapshot(
        cls,
        data: bytes,
        *,
        lease_exists: LeaseExists | None = None,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
    ) -> MVCCStore:
        store = cls(lease_exists=lease_exists, max_txn_ops=max_txn_ops)
        store.restore(data)
        return store


class _Write:
    """One write transaction: etcd's storeTxnWrite. Changes go straight into the
    store at revision begin + 1 (sub-revisions in order); `commit` then moves the
    store revision if anything changed. Callers check everything that can fail
    before the first change, so a write never stops half-way."""

    __slots__ = ("begin", "changes", "s")

    def __init__(self, store: MVCCStore) -> None:
        self.s = store
        self.begin = store._current_rev
        self.changes: list[Event] = []

    @property
    def read_rev(self) -> int:
        return self.begin + 1 if self.changes else self.begin

    def commit(self) -> None:
        if self.changes:
            self.s._current_rev = self.begin + 1

    def _next_rev(self) -> Revision:
        return Revision(self.begin + 1, len(self.changes))

    def _current(self, key: bytes) -> KeyValue | None:
        found = self.s._index.get(key, self.read_rev)
        return None if found is None else self.s._kvs[found[0]]

    # -- ops -------------------------------------------------------------------------

    def put(self, req: PutRequest) -> PutResponse:
        prev = self._current(req.key)
        if (req.ignore_value or req.ignore_lease) and prev is None:  # pragma: no cover
            raise KeyNotFound()  # checked before the write began
        value = prev.value if req.ignore_value and prev is not None else req.value
        lease = prev.lease if req.ignore_lease and prev is not None else req.lease
        rev = self._next_rev()
        if prev is None:
            kv = KeyValue(req.key, rev.main, rev.main, 1, value, lease)
        else:
            kv = KeyValue(req.key, prev.create_revision, rev.main, prev.version + 1, value, lease)
        self.s._index.put(req.key, rev)
        self.s._kvs[rev] = kv
        if prev is None:
            self.s._live += 1
        ev = Event(EventType.PUT, kv, prev)
        self.changes.append(ev)
        return PutResponse(rev.main, prev if req.prev_kv else None, (ev,))

    def delete_range(self, req: DeleteRangeRequest) -> DeleteRangeResponse:
        prevs = self.s._read_kvs(req.key, req.range_end, self.read_rev)
        events: list[Event] = []
        for prev in prevs:
            rev = self._next_rev()
            kv = KeyValue(prev.key, 0, rev.main, 0)
            self.s._index.tombstone(prev.key, rev)
            self.s._kvs[rev] = kv
            ev = Event(EventType.DELETE, kv, prev)
            self.changes.append(ev)
            events.append(ev)
        self.s._live -= len(prevs)
        return DeleteRangeResponse(
            self.read_rev, len(prevs), tuple(prevs) if req.prev_kv else (), tuple(events)
        )

    def txn(self, req: TxnRequest, path: Iterator[bool]) -> TxnResponse:
        succeeded = next(path)
        start = len(self.changes)
        responses: list[ResponseOp] = []
        for op in req.success if succeeded else req.failure:
            if isinstance(op, RangeRequest):
                responses.append(self.s._range(op, self.read_rev))
            elif isinstance(op, PutRequest):
                responses.append(self.put(op))
            elif isinstance(op, DeleteRangeRequest):
                responses.append(self.delete_range(op))
            else:
                responses.append(self.txn(op, path))
        events = tuple(self.changes[start:])
        return TxnResponse(self.read_rev, succeeded, tuple(responses), events)
