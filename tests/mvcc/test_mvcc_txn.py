"""Txn semantics (etcd v3.5 apply path): compares, branches, one revision for all
writes, nested txns, and the requests etcd rejects before running anything."""

from __future__ import annotations

import pytest

from raftkv.kv.mvcc import (
    Compacted,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    DuplicateKey,
    EmptyKey,
    EventType,
    FutureRevision,
    InvalidCompare,
    KeyNotFound,
    KeyValue,
    LeaseNotFound,
    LeaseProvided,
    MVCCStore,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RequestOp,
    TooManyOps,
    TxnRequest,
    TxnResponse,
    ValueProvided,
)

T, R = CompareTarget, CompareResult


def cmp(key: bytes, target: CompareTarget, result: CompareResult, operand: int | bytes,
        end: bytes = b"") -> Compare:  # fmt: skip
    return Compare(key, target, result, operand, end)


def holds(store: MVCCStore, c: Compare) -> bool:
    return store.txn([c]).succeeded


def abc() -> MVCCStore:
    s = MVCCStore(lease_exists=lambda lease: lease == 5)
    s.put(b"a", b"1")  # 2
    s.put(b"b", b"2", lease=5)  # 3
    s.put(b"a", b"1")  # 4: a version 2
    return s


# -- compares --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compare", "want"),
    [
        (cmp(b"a", T.VERSION, R.EQUAL, 2), True),
        (cmp(b"a", T.VERSION, R.GREATER, 1), True),
        (cmp(b"a", T.VERSION, R.LESS, 2), False),
        (cmp(b"a", T.VERSION, R.NOT_EQUAL, 2), False),
        (cmp(b"a", T.CREATE, R.EQUAL, 2), True),
        (cmp(b"a", T.MOD, R.EQUAL, 4), True),
        (cmp(b"a", T.MOD, R.LESS, 4), False),
        (cmp(b"a", T.VALUE, R.EQUAL, b"1"), True),
        (cmp(b"a", T.VALUE, R.GREATER, b"0"), True),
        (cmp(b"a", T.VALUE, R.LESS, b"10"), True),
        (cmp(b"b", T.LEASE, R.EQUAL, 5), True),
        (cmp(b"a", T.LEASE, R.EQUAL, 0), True),
    ],
)
def test_compare_targets_and_results(compare: Compare, want: bool) -> None:
    assert holds(abc(), compare) is want


@pytest.mark.parametrize(
    ("compare", "want"),
    [
        # a missing key has version, create and mod revision (and lease) 0 ...
        (cmp(b"zz", T.VERSION, R.EQUAL, 0), True),
        (cmp(b"zz", T.CREATE, R.EQUAL, 0), True),
        (cmp(b"zz", T.MOD, R.LESS, 1), True),
        (cmp(b"zz", T.LEASE, R.EQUAL, 0), True),
        (cmp(b"zz", T.VERSION, R.GREATER, 0), False),
        # ... and a VALUE compare on it always fails, even "!="
        (cmp(b"zz", T.VALUE, R.EQUAL, b""), False),
        (cmp(b"zz", T.VALUE, R.NOT_EQUAL, b"x"), False),
    ],
)
def test_compare_on_a_missing_key(compare: Compare, want: bool) -> None:
    assert holds(abc(), compare) is want


@pytest.mark.parametrize(
    ("compare", "want"),
    [
        (cmp(b"a", T.VERSION, R.GREATER, 0, b"c"), True),  # every key in [a, c)
        (cmp(b"a", T.VERSION, R.EQUAL, 2, b"c"), False),  # b has version 1
        (cmp(b"a", T.MOD, R.LESS, 5, b"\x00"), True),
        (cmp(b"c", T.CREATE, R.EQUAL, 0, b"d"), True),  # an empty range: one zero kv
        (cmp(b"c", T.VALUE, R.NOT_EQUAL, b"x", b"d"), False),
    ],
)
def test_compare_on_a_range_holds_only_for_every_key(compare: Compare, want: bool) -> None:
    assert holds(abc(), compare) is want


def test_a_compare_operand_must_fit_its_target() -> None:
    s = abc()
    with pytest.raises(InvalidCompare):
        s.txn([cmp(b"a", T.VALUE, R.EQUAL, 1)])
    with pytest.raises(InvalidCompare):
        s.txn([cmp(b"a", T.VERSION, R.EQUAL, b"1")])
    with pytest.raises(EmptyKey):
        s.txn([cmp(b"", T.VERSION, R.EQUAL, 1)])


# -- branches and revisions ---------------------------------------------------------


def test_success_branch_writes_everything_at_one_revision_in_order() -> None:
    s = abc()
    r = s.txn(
        [cmp(b"a", T.VERSION, R.EQUAL, 2)],
        [PutRequest(b"x", b"1"), DeleteRangeRequest(b"a"), PutRequest(b"y", b"2")],
        [PutRequest(b"never")],
    )
    assert r.succeeded
    assert r.revision == 5
    assert s.revision == 5
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in r.events] == [
        (EventType.PUT, b"x", 5),
        (EventType.DELETE, b"a", 5),
        (EventType.PUT, b"y", 5),
    ]
    assert s.get(b"never") is None
    assert s.get(b"a") is None
    assert s.get(b"y") == KeyValue(b"y", 5, 5, 1, b"2")


def test_failed_compare_runs_the_failure_branch() -> None:
    s = abc()
    r = s.txn([cmp(b"a", T.VERSION, R.EQUAL, 9)], [PutRequest(b"x")], [RangeRequest(b"a")])
    assert not r.succeeded
    assert r.revision == 4
    assert s.revision == 4
    (rr,) = r.responses
    assert isinstance(rr, RangeResponse)
    assert rr.kvs[0].key == b"a"


def test_a_txn_without_changes_does_not_bump_the_revision() -> None:
    s = abc()
    r = s.txn([], [RangeRequest(b"a"), DeleteRangeRequest(b"zz")])
    assert r.revision == 4
    assert r.events == ()
    assert s.revision == 4
    assert s.txn().revision == 4  # empty txn: succeeds, changes nothing
    assert s.txn().succeeded


def test_reads_in_a_txn_see_its_earlier_writes() -> None:
    s = abc()
    r = s.txn(
        [],
        [
            RangeRequest(b"x"),
            PutRequest(b"x", b"new"),
            RangeRequest(b"x"),
            RangeRequest(b"x", revision=4),
            DeleteRangeRequest(b"a", prev_kv=True),
        ],
    )
    r0, p, r1, r2, d = r.responses
    assert isinstance(r0, RangeResponse)
    assert r0.kvs == ()
    assert r0.revision == 4
    assert isinstance(p, PutResponse)
    assert p.revision == 5
    assert isinstance(r1, RangeResponse)
    assert r1.kvs[0].value == b"new"
    assert r1.revision == 5
    assert isinstance(r2, RangeResponse)
    assert r2.kvs == ()
    assert isinstance(d, DeleteRangeResponse)
    assert d.deleted == 1
    assert d.prev_kvs[0].key == b"a"


def test_nested_txn_compares_see_the_store_before_the_outer_txn() -> None:
    s = abc()
    inner = TxnRequest(
        (cmp(b"x", T.VERSION, R.EQUAL, 0),),  # x is put by the outer txn first
        (PutRequest(b"saw-before"),),
        (PutRequest(b"saw-after"),),
    )
    r = s.txn([], [PutRequest(b"x"), inner])
    nested = r.responses[1]
    assert isinstance(nested, TxnResponse)
    assert nested.succeeded
    assert s.get(b"saw-before") is not None
    assert s.get(b"saw-after") is None
    assert r.revision == 5
    assert [e.kv.key for e in r.events] == [b"x", b"saw-before"]
    assert nested.events == r.events[1:]


def test_a_failed_state_check_anywhere_on_the_path_changes_nothing() -> None:
    s = abc()
    cases: list[tuple[list[RequestOp], type[Exception]]] = [
        ([PutRequest(b"x"), PutRequest(b"y", lease=9)], LeaseNotFound),
        ([PutRequest(b"x"), PutRequest(b"zz", ignore_value=True)], KeyNotFound),
        ([PutRequest(b"x"), RangeRequest(b"a", revision=99)], FutureRevision),
        ([PutRequest(b"x"), TxnRequest((), (PutRequest(b"y", lease=9),))], LeaseNotFound),
    ]
    for ops, error in cases:
        with pytest.raises(error):
            s.txn([], ops)
        assert s.revision == 4
        assert s.get(b"x") is None
    # an op on the branch not taken is not checked
    s.txn([], [PutRequest(b"x")], [PutRequest(b"y", lease=9)])
    assert s.revision == 5


def test_a_txn_range_below_the_compact_revision_is_compacted() -> None:
    s = abc()
    s.compact(3)
    with pytest.raises(Compacted):
        s.txn([], [RangeRequest(b"a", revision=2)])


def test_nested_siblings_may_put_then_delete_one_key() -> None:
    """etcd's duplicate check does not compare an earlier nested put with a later
    nested delete: both run, in order, at one revision."""
    s = abc()
    r = s.txn(
        [],
        [
            TxnRequest((), (PutRequest(b"k", b"v"),)),
            TxnRequest((), (DeleteRangeRequest(b"k"),)),
        ],
    )
    assert [(e.type, e.kv.key) for e in r.events] == [
        (EventType.PUT, b"k"),
        (EventType.DELETE, b"k"),
    ]
    assert s.get(b"k") is None
    assert s.revision == 5
    assert s.events(5) == list(r.events)


# -- rejected before running ------------------------------------------------------------

P = PutRequest
D = DeleteRangeRequest


def nested(success: tuple[RequestOp, ...] = (), failure: tuple[RequestOp, ...] = ()) -> TxnRequest:
    return TxnRequest((), success, failure)


@pytest.mark.parametrize(
    ("success", "duplicate"),
    [
        ([P(b"a"), P(b"a")], True),
        ([P(b"a"), P(b"b")], False),
        ([D(b"a"), P(b"a")], True),
        ([P(b"a"), D(b"a")], True),
        ([D(b"a", b"c"), P(b"b")], True),
        ([D(b"a", b"c"), P(b"c")], False),
        ([D(b"a", b"\x00"), P(b"z")], True),  # "\0" is unbounded here (etcd: not checked)
        ([D(b"a"), D(b"a")], False),  # deletes may overlap
        ([P(b"a"), nested((P(b"a"),))], True),
        ([nested((P(b"a"),), (P(b"a"),))], False),  # then/else exclude each other
        ([nested((P(b"a"),)), nested((), (P(b"a"),))], True),
        ([D(b"a"), nested((P(b"a"),))], True),
        ([nested((D(b"a"),)), P(b"a")], True),
        ([nested((D(b"a"),)), nested((P(b"a"),))], True),
        ([nested((P(b"a"),)), nested((D(b"a"),))], False),  # as in etcd
        ([nested((nested((P(b"a"), P(b"a"))),))], True),
    ],
)
def test_duplicate_key_given_in_txn_request(success: list[RequestOp], duplicate: bool) -> None:
    s = abc()
    none: list[RequestOp] = []
    for then, other in ((success, none), (none, success)):
        if duplicate:
            with pytest.raises(DuplicateKey, match="duplicate key given in txn request"):
                s.txn([], then, other)
        else:
            s.txn([], then, other)


def test_too_many_operations_in_txn_request() -> None:
    s = MVCCStore(max_txn_ops=3)
    s.txn(
        [cmp(b"a", T.VERSION, R.EQUAL, 0)] * 3,
        [P(b"a"), P(b"b"), P(b"c")],
        [P(b"d"), P(b"e"), P(b"f")],
    )
    with pytest.raises(TooManyOps, match="too many operations in txn request"):
        s.txn([], [P(b"a"), P(b"b"), P(b"c"), P(b"d")])
    with pytest.raises(TooManyOps):
        s.txn([cmp(b"a", T.VERSION, R.EQUAL, 0)] * 4)
    # a nested txn gets what its parent left: 3 - 2 = 1
    s.txn([], [P(b"x"), nested((P(b"y"),))])
    with pytest.raises(TooManyOps):
        s.txn([], [P(b"x"), nested((P(b"y"), P(b"z")))])
    assert MVCCStore().txn([], [P(bytes([i])) for i in range(1, 129)]).revision == 2


@pytest.mark.parametrize(
    ("op", "error"),
    [
        (RangeRequest(b""), EmptyKey),
        (P(b""), EmptyKey),
        (D(b""), EmptyKey),
        (nested((P(b""),)), EmptyKey),
        (P(b"a", b"v", ignore_value=True), ValueProvided),
        (P(b"a", lease=1, ignore_lease=True), LeaseProvided),
    ],
)
def test_invalid_ops_are_rejected_whole(op: RequestOp, error: type[Exception]) -> None:
    s = abc()
    with pytest.raises(error):
        s.txn([], [P(b"fine"), op])
    assert s.revision == 4
    assert s.get(b"fine") is None
