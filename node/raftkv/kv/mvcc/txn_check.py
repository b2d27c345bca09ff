"""Request validation that needs no state: etcd's v3rpc `checkTxnRequest`,
`checkRequestOp` and `checkIntervals` (server/etcdserver/api/v3rpc/key.go).

- Too many operations: max(len(compare), len(success), len(failure)) > max_ops; a
  nested txn gets the budget left (max_ops minus its parent's count).
- Every key (of a compare, range, put, delete) must be non-empty, and a compare's
  operand must fit its target (bytes for VALUE, an int otherwise).
- A put may not carry a value with ignore_value, nor a lease with ignore_lease.
- No key may be written twice: two puts of one key, or a put of a key inside a range
  deleted in the same txn, on any branch. The two branches of one nested txn exclude
  each other, so each may put the same key. Deletes may overlap deletes.

Deviation from etcd, on purpose: etcd's interval tree reads a delete's range_end of
`b"\\0"` (all keys >= key) as an empty interval, so it lets a txn put a key that the
same txn deletes with such a range; here that range is unbounded and the txn is
rejected, so a txn never writes one key twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import (
    DuplicateKey,
    EmptyKey,
    InvalidCompare,
    LeaseProvided,
    TooManyOps,
    ValueProvided,
)
from .ranges import in_range
from .requests import (
    Compare,
    CompareTarget,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
)

DEFAULT_MAX_TXN_OPS = 128
"""etcd's default `--max-txn-ops`."""


def check_put(req: PutRequest) -> None:
    if not req.key:
        raise EmptyKey()
    if req.ignore_value and req.value:
        raise ValueProvided()
    if req.ignore_lease and req.lease != 0:
        raise LeaseProvided()


def check_key(key: bytes) -> None:
    if not key:
        raise EmptyKey()


def check_compare(c: Compare) -> None:
    check_key(c.key)
    operand = c.operand
    if c.target == CompareTarget.VALUE:
        if type(operand) is not bytes:
            raise InvalidCompare()
    elif type(operand) is not int:
        raise InvalidCompare()


def check_txn(txn: TxnRequest, max_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """All of a txn's stateless checks, nested txns included."""
    _check_txn_request(txn, max_ops)
    _check_intervals(txn.success)
    _check_intervals(txn.failure)


def _check_txn_request(txn: TxnRequest, max_ops: int) -> None:
    opc = max(len(txn.compare), len(txn.success), len(txn.failure))
    if opc > max_ops:
        raise TooManyOps()
    for c in txn.compare:
        check_compare(c)
    for op in (*txn.success, *txn.failure):
        _check_request_op(op, max_ops - opc)


def _check_request_op(op: RequestOp, max_ops: int) -> None:
    if isinstance(op, RangeRequest | DeleteRangeRequest):
        check_key(op.key)
    elif isinstance(op, PutRequest):
        check_put(op)
    else:
        _check_txn_request(op, max_ops)


_Dels = list[tuple[bytes, bytes]]


def _covered(k: bytes, dels: _Dels) -> bool:
    return any(in_range(k, key, end) for key, end in dels)


def _check_intervals(ops: Sequence[RequestOp]) -> tuple[set[bytes], _Dels]:
    """The keys put and the ranges deleted by `ops` (nested txns included); raises
    DuplicateKey on an overlap."""
    dels: _Dels = [(op.key, op.range_end) for op in ops if isinstance(op, DeleteRangeRequest)]
    puts: set[bytes] = set()
    for op in ops:
        if not isinstance(op, TxnRequest):
            continue
        puts_then, dels_then = _check_intervals(op.success)
        puts_else, dels_else = _check_intervals(op.failure)
        for k in puts_then:
            if k in puts or _covered(k, dels):
                raise DuplicateKey()
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or _covered(k, dels):
                raise DuplicateKey()
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if not isinstance(op, PutRequest):
            continue
        if op.key in puts or _covered(op.key, dels):
            raise DuplicateKey()
        puts.add(op.key)
    return puts, dels
