"""Model-based test of the MVCC store: random puts, deletes (of ranges too), txns
(nested one level), compactions, ranges at random revisions, history reads and
snapshot/restore, checked against a reference model made of plain dicts: one full
copy of the key space per revision.

The model is written from etcd's rules, not from the store's code: it keeps every
revision forever and only refuses to read below the compact revision, so any
difference in what compaction keeps shows up as a wrong answer at a later read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from raftkv.kv.mvcc import (
    Compacted,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    DuplicateKey,
    Event,
    EventType,
    FutureRevision,
    KeyNotFound,
    KeyValue,
    LeaseNotFound,
    LeaseProvided,
    MVCCError,
    MVCCStore,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RequestOp,
    ResponseOp,
    SortOrder,
    SortTarget,
    TooManyOps,
    TxnRequest,
    TxnResponse,
    ValueProvided,
)

KEYS = [b"\x00", b"a", b"ab", b"b", b"ba", b"c"]
ENDS = [b"", b"", b"\x00", b"a", b"ab", b"b", b"bb", b"c", b"d"]
VALUES = [b"", b"x", b"y", b"zz"]
LEASES = [0, 0, 0, 0, 1, 2, 2, 3]
LIVE_LEASES = {1, 2}
MAX_OPS = 4

# -- strategies ----------------------------------------------------------------------

keys = st.sampled_from(KEYS)
ends = st.sampled_from(ENDS)
revisions = st.integers(-2, 14)


@st.composite
def puts(draw: st.DrawFn) -> PutRequest:
    """Mostly valid puts; now and then an unknown lease (3), or an ignore_* flag
    (with a value or lease on one in five of them, which is an error)."""
    ignore_value = draw(st.sampled_from([False] * 5 + [True]))
    ignore_lease = draw(st.sampled_from([False] * 5 + [True]))
    value = draw(st.sampled_from(VALUES))
    lease = draw(st.sampled_from(LEASES))
    if ignore_value and draw(st.integers(0, 4)):
        value = b""
    if ignore_lease and draw(st.integers(0, 4)):
        lease = 0
    return PutRequest(draw(keys), value, lease, draw(st.booleans()), ignore_value, ignore_lease)


deletes = st.builds(DeleteRangeRequest, key=keys, range_end=ends, prev_kv=st.booleans())
ranges = st.builds(
    RangeRequest,
    key=keys,
    range_end=ends,
    revision=st.sampled_from([0, 0, 0, 0, 0]) | revisions,
    limit=st.sampled_from([0, 0, 1, 2, 3]),
    keys_only=st.booleans(),
    count_only=st.sampled_from([False, False, False, True]),
    sort_order=st.sampled_from(SortOrder),
    sort_target=st.sampled_from(SortTarget),
    min_mod_revision=st.sampled_from([0, 0, 0, 3, 6]),
    max_mod_revision=st.sampled_from([0, 0, 0, 4, 8]),
    min_create_revision=st.sampled_from([0, 0, 0, 2, 5]),
    max_create_revision=st.sampled_from([0, 0, 0, 4, 9]),
)


@st.composite
def compares(draw: st.DrawFn) -> Compare:
    target = draw(st.sampled_from(CompareTarget))
    operand: int | bytes
    if target == CompareTarget.VALUE:
        operand = draw(st.sampled_from(VALUES))
    elif target == CompareTarget.LEASE:
        operand = draw(st.sampled_from([0, 1, 2]))
    else:
        operand = draw(st.integers(0, 8))
    return Compare(
        draw(keys),
        target,
        draw(st.sampled_from(CompareResult)),
        operand,
        draw(st.sampled_from([b"", b"", b"", b"\x00", b"c"])),
    )


simple_ops: st.SearchStrategy[RequestOp] = st.one_of(puts(), puts(), deletes, ranges)


def txns(ops: st.SearchStrategy[RequestOp]) -> st.SearchStrategy[TxnRequest]:
    return st.builds(
        TxnRequest,
        compare=st.lists(compares(), max_size=3).map(tuple),
        success=st.lists(ops, max_size=4).map(tuple),
        failure=st.lists(ops, max_size=3).map(tuple),
    )


nested_ops: st.SearchStrategy[RequestOp] = st.one_of(simple_ops, txns(simple_ops))
top_txns = txns(nested_ops)

# -- the model ---------------------------------------------------------------------


def m_in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if end == b"":
        return k == key
    if end == b"\x00":
        return k >= key
    return key <= k < end


State = dict[bytes, KeyValue]


class Model:
    def __init__(self) -> None:
        self.history: list[State] = [{}, {}]
        """history[r]: the whole key space at revision r (index 0 unused)."""
        self.compact = -1
        self.events: list[Event] = []

    @property
    def cur(self) -> int:
        return len(self.history) - 1

    # -- range ---------------------------------------------------------------------

    def range(self, req: RangeRequest, state: State, header: int) -> RangeResponse:
        kvs = [state[k] for k in sorted(state) if m_in_range(k, req.key, req.range_end)]
        count = len(kvs)
        if req.count_only:
            return RangeResponse(header, (), False, count)
        bounds = (req.min_mod_revision, req.max_mod_revision)
        filtered = any(bounds) or req.min_create_revision or req.max_create_revision
        if req.limit > 0 and req.sort_order == SortOrder.NONE and not filtered:
            # etcd reads limit + 1 keys (in key order) unless a sort *order* or a
            # filter is given, then sorts what it read: a sort target alone sorts
            # only the first limit + 1 keys.
            kvs = kvs[: req.limit + 1]
        if req.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision >= req.min_mod_revision]
        if req.max_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision <= req.max_mod_revision]
        if req.min_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision >= req.min_create_revision]
        if req.max_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision <= req.max_create_revision]
        order = req.sort_order
        if order == SortOrder.NONE and req.sort_target != SortTarget.KEY:
            order = SortOrder.ASCEND
        if order != SortOrder.NONE:
            field = {
                SortTarget.KEY: "key",
                SortTarget.VERSION: "version",
                SortTarget.CREATE: "create_revision",
                SortTarget.MOD: "mod_revision",
                SortTarget.VALUE: "value",
            }[req.sort_target]
            kvs.sort(key=lambda kv: getattr(kv, field), reverse=order == SortOrder.DESCEND)
        more = False
        if req.limit > 0 and len(kvs) > req.limit:
            kvs, more = kvs[: req.limit], True
        if req.keys_only:
            kvs = [replace(kv, value=b"") for kv in kvs]
        return RangeResponse(header, tuple(kvs), more, count)

    def top_range(self, req: RangeRequest) -> RangeResponse:
        rev = req.revision
        if rev > self.cur:
            raise FutureRevision(rev, self.cur)
        if rev <= 0:
            rev = self.cur
        if rev < self.compact:
            raise Compacted(self.compact)
        return self.range(req, self.history[rev], self.cur)

    # -- writes --------------------------------------------------------------------

    def check_put(self, req: PutRequest, state: State) -> None:
        if req.ignore_value and req.value:
            raise ValueProvided()
        if req.ignore_lease and req.lease:
            raise LeaseProvided()

    def check_put_state(self, req: PutRequest, state: State) -> None:
        if (req.ignore_value or req.ignore_lease) and req.key not in state:
            raise KeyNotFound()
        if req.lease and req.lease not in LIVE_LEASES:
            raise LeaseNotFound(req.lease)

    def commit(self, work: State, events: list[Event]) -> None:
        if events:
            self.history.append(work)
            self.events.extend(events)

    def put(self, req: PutRequest) -> PutResponse:
        state = self.history[self.cur]
        self.check_put(req, state)
        self.check_put_state(req, state)
        work: State = dict(state)
        events: list[Event] = []
        resp = self.do_put(req, work, events)
        self.commit(work, events)
        return resp

    def do_put(self, req: PutRequest, work: State, events: list[Event]) -> PutResponse:
        new = self.cur + 1
        prev = work.get(req.key)
        value = prev.value if req.ignore_value and prev else req.value
        lease = prev.lease if req.ignore_lease and prev else req.lease
        if prev is None:
            kv = KeyValue(req.key, new, new, 1, value, lease)
        else:
            kv = KeyValue(req.key, prev.create_revision, new, prev.version + 1, value, lease)
        work[req.key] = kv
        ev = Event(EventType.PUT, kv, prev)
        events.append(ev)
        return PutResponse(new, prev if req.prev_kv else None, (ev,))

    def delete(self, req: DeleteRangeRequest) -> DeleteRangeResponse:
        work: State = dict(self.history[self.cur])
        events: list[Event] = []
        resp = self.do_delete(req, work, events)
        self.commit(work, events)
        return resp

    def do_delete(
        self, req: DeleteRangeRequest, work: State, events: list[Event]
    ) -> DeleteRangeResponse:
        new = self.cur + 1
        gone = [k for k in sorted(work) if m_in_range(k, req.key, req.range_end)]
        prevs = tuple(work[k] for k in gone)
        mine = []
        for k in gone:
            ev = Event(EventType.DELETE, KeyValue(k, 0, new, 0), work.pop(k))
            events.append(ev)
            mine.append(ev)
        header = new if events else self.cur
        return DeleteRangeResponse(header, len(gone), prevs if req.prev_kv else (), tuple(mine))

    # -- txn -----------------------------------------------------------------------

    def stateless(self, txn: TxnRequest, budget: int) -> None:
        opc = max(len(txn.compare), len(txn.success), len(txn.failure))
        if opc > budget:
            raise TooManyOps()
        for op in (*txn.success, *txn.failure):
            if isinstance(op, PutRequest):
                self.check_put(op, {})
            elif isinstance(op, TxnRequest):
                self.stateless(op, budget - opc)

    def writes(self, ops: tuple[RequestOp, ...]) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
        """etcd's checkIntervals: (keys put, ranges deleted) or DuplicateKey."""
        dels = [(op.key, op.range_end) for op in ops if isinstance(op, DeleteRangeRequest)]

        def covered(k: bytes) -> bool:
            return any(m_in_range(k, a, b) for a, b in dels)

        put: set[bytes] = set()
        for op in ops:
            if isinstance(op, TxnRequest):
                p_then, d_then = self.writes(op.success)
                p_else, d_else = self.writes(op.failure)
                for k in p_then:
                    if k in put or covered(k):
                        raise DuplicateKey()
                for k in p_else:
                    if (k in put and k not in p_then) or covered(k):
                        raise DuplicateKey()
                put |= p_then | p_else
                dels += d_then + d_else
        for op in ops:
            if isinstance(op, PutRequest):
                if op.key in put or covered(op.key):
                    raise DuplicateKey()
                put.add(op.key)
        return put, dels

    def holds(self, c: Compare, state: State) -> bool:
        kvs = [state[k] for k in sorted(state) if m_in_range(k, c.key, c.range_end)]
        if not kvs:
            if c.target == CompareTarget.VALUE:
                return False
            kvs = [KeyValue(c.key, 0, 0, 0)]
        field = {
            CompareTarget.VERSION: "version",
            CompareTarget.CREATE: "create_revision",
            CompareTarget.MOD: "mod_revision",
            CompareTarget.VALUE: "value",
            CompareTarget.LEASE: "lease",
        }[c.target]
        ops: dict[CompareResult, Callable[[Any, Any], bool]] = {
            CompareResult.EQUAL: lambda a, b: a == b,
            CompareResult.NOT_EQUAL: lambda a, b: a != b,
            CompareResult.LESS: lambda a, b: a < b,
            CompareResult.GREATER: lambda a, b: a > b,
        }
        return all(ops[c.result](getattr(kv, field), c.operand) for kv in kvs)

    def path(self, txn: TxnRequest, state: State, out: list[bool]) -> None:
        ok = all(self.holds(c, state) for c in txn.compare)
        out.append(ok)
        for op in txn.success if ok else txn.failure:
            if isinstance(op, TxnRequest):
                self.path(op, state, out)

    def check_path(self, txn: TxnRequest, path: Iterator[bool], state: State) -> None:
        for op in txn.success if next(path) else txn.failure:
            if isinstance(op, TxnRequest):
                self.check_path(op, path, state)
            elif isinstance(op, PutRequest):
                self.check_put_state(op, state)
            elif isinstance(op, RangeRequest) and op.revision != 0:
                if op.revision > self.cur:
                    raise FutureRevision(op.revision, self.cur)
                if op.revision < self.compact:
                    raise Compacted(self.compact)

    def txn(self, txn: TxnRequest) -> TxnResponse:
        self.stateless(txn, MAX_OPS)
        self.writes(txn.success)
        self.writes(txn.failure)
        state = self.history[self.cur]
        path: list[bool] = []
        self.path(txn, state, path)
        self.check_path(txn, iter(path), state)
        work: State = dict(state)
        events: list[Event] = []
        resp = self.run(txn, iter(path), work, events)
        self.commit(work, events)
        return replace(resp, revision=self.cur)

    def run(
        self, txn: TxnRequest, path: Iterator[bool], work: State, events: list[Event]
    ) -> TxnResponse:
        ok = next(path)
        start = len(events)
        out: list[ResponseOp] = []
        for op in txn.success if ok else txn.failure:
            header = self.cur + 1 if events else self.cur
            if isinstance(op, RangeRequest):
                rev = op.revision
                view = work if rev <= 0 else self.history[rev]
                out.append(self.range(op, view, header))
            elif isinstance(op, PutRequest):
                out.append(self.do_put(op, work, events))
            elif isinstance(op, DeleteRangeRequest):
                out.append(self.do_delete(op, work, events))
            else:
                out.append(self.run(op, path, work, events))
        header = self.cur + 1 if events else self.cur
        return TxnResponse(header, ok, tuple(out), tuple(events[start:]))

    # -- compaction and history ------------------------------------------------------

    def compaction(self, rev: int) -> int:
        if rev <= self.compact:
            raise Compacted(self.compact)
        if rev > self.cur:
            raise FutureRevision(rev, self.cur)
        self.compact = rev
        return self.cur

    def history_since(self, start: int) -> list[Event]:
        if start <= self.compact:
            raise Compacted(self.compact)
        if start > self.cur + 1:
            raise FutureRevision(start, self.cur)
        return [ev for ev in self.events if ev.kv.mod_revision >= start]


# -- the state machine ----------------------------------------------------------------


def outcome(f: Callable[[], object]) -> object:
    """The answer, or the error's class and its compact revision (if any)."""
    try:
        got = f()
    except MVCCError as exc:
        event(f"error {type(exc).__name__}")
        return (type(exc), getattr(exc, "compact_revision", None))
    if isinstance(got, TxnResponse):
        event(f"txn succeeded={got.succeeded} wrote={bool(got.events)}")
    return got


class MVCCMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.lease_exists = LIVE_LEASES.__contains__
        self.store = MVCCStore(lease_exists=self.lease_exists, max_txn_ops=MAX_OPS)
        self.model = Model()

    @rule(req=puts())
    def put(self, req: PutRequest) -> None:
        got = outcome(lambda: self.store.put_request(req))
        assert got == outcome(lambda: self.model.put(req))

    @rule(req=deletes)
    def delete(self, req: DeleteRangeRequest) -> None:
        got = outcome(lambda: self.store.delete_range_request(req))
        assert got == outcome(lambda: self.model.delete(req))

    @rule(req=top_txns)
    def txn(self, req: TxnRequest) -> None:
        got = outcome(lambda: self.store.txn_request(req))
        assert got == outcome(lambda: self.model.txn(req))

    @rule(req=ranges, back=st.none() | st.integers(-2, 12))
    def range(self, req: RangeRequest, back: int | None) -> None:
        if back is not None:
            req = replace(req, revision=self.model.cur - back)
        got = outcome(lambda: self.store.range_request(req))
        assert got == outcome(lambda: self.model.top_range(req))

    @rule(back=st.integers(-2, 12))
    def compact(self, back: int) -> None:
        rev = self.model.cur - back
        got = outcome(lambda: self.store.compact(rev).revision)
        assert got == outcome(lambda: self.model.compaction(rev))

    @rule(back=st.integers(-2, 12))
    def events(self, back: int) -> None:
        start = self.model.cur - back
        got = outcome(lambda: self.store.events(start))
        assert got == outcome(lambda: self.model.history_since(start))

    @rule()
    def snapshot_and_restore(self) -> None:
        data = self.store.snapshot()
        self.store = MVCCStore.from_snapshot(
            data, lease_exists=self.lease_exists, max_txn_ops=MAX_OPS
        )
        assert self.store.snapshot() == data

    @invariant()
    def every_readable_revision_agrees(self) -> None:
        m = self.model
        assert self.store.revision == m.cur
        assert self.store.compact_revision == m.compact
        for rev in range(max(m.compact, 1), m.cur + 1):
            got = self.store.range(b"\x00", b"\x00", revision=rev).kvs
            assert got == tuple(m.history[rev][k] for k in sorted(m.history[rev])), rev


MVCCMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMVCCAgainstModel = MVCCMachine.TestCase
