"""Txn compares: etcd's `applyCompare` / `compareKV` (server/etcdserver/txn)."""

from __future__ import annotations

from collections.abc import Sequence

from .kv import KeyValue
from .requests import Compare, CompareResult, CompareTarget

_MISSING = KeyValue(b"", 0, 0, 0)


def compare_holds(c: Compare, kvs: Sequence[KeyValue]) -> bool:
    """Whether `c` holds over the kvs currently in its key or range: for every one
    of them; with none, against a kv of zeros, except that a VALUE compare then
    fails (a missing value cannot be told from an empty one)."""
    if not kvs:
        if c.target == CompareTarget.VALUE:
            return False
        return compare_kv(c, _MISSING)
    return all(compare_kv(c, kv) for kv in kvs)


def compare_kv(c: Compare, kv: KeyValue) -> bool:
    t = c.target
    result: int
    if t == CompareTarget.VALUE:
        a: bytes = kv.value
        b = c.operand
        assert isinstance(b, bytes)
        result = (a > b) - (a < b)
    else:
        x = _int_field(t, kv)
        y = c.operand
        assert isinstance(y, int)
        result = (x > y) - (x < y)
    r = c.result
    if r == CompareResult.EQUAL:
        return result == 0
    if r == CompareResult.NOT_EQUAL:
        return result != 0
    if r == CompareResult.GREATER:
        return result > 0
    return result < 0


def _int_field(t: CompareTarget, kv: KeyValue) -> int:
    if t == CompareTarget.VERSION:
        return kv.version
    if t == CompareTarget.CREATE:
        return kv.create_revision
    if t == CompareTarget.MOD:
        return kv.mod_revision
    return kv.lease
