"""Requests and responses of the etcd v3 KV API (Range, Put, DeleteRange, Txn,
Compact), as plain frozen dataclasses; field names and defaults follow etcdserverpb.

A response's `revision` is etcd's header revision: the store revision after the call
(a read or a no-op write reports the current one). Inside a txn, a nested response
reports the revision as seen at that point of the txn. Write responses carry the
`events` they produced, in revision order; a txn's own `events` are all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from .kv import Event, KeyValue

# -- range -----------------------------------------------------------------------


class SortOrder(IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


@dataclass(frozen=True, slots=True)
class RangeRequest:
    key: bytes
    range_end: bytes = b""
    revision: int = 0
    """0 (or negative): the current revision."""
    limit: int = 0
    """0 (or negative): no limit."""
    keys_only: bool = False
    count_only: bool = False
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(frozen=True, slots=True)
class RangeResponse:
    revision: int
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    """More keys matched than `limit` returned."""
    count: int = 0
    """Keys in the range at the read revision, before the min/max filters and the
    limit (etcd's count)."""


# -- put / delete ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutRequest:
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(frozen=True, slots=True)
class PutResponse:
    revision: int
    prev_kv: KeyValue | None = None
    events: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class DeleteRangeRequest:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class DeleteRangeResponse:
    revision: int
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()
    events: tuple[Event, ...] = ()


# -- txn -------------------------------------------------------------------------


class CompareTarget(IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class CompareResult(IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


@dataclass(frozen=True, slots=True)
class Compare:
    """`target(key) <result> operand`. The operand is bytes for VALUE, an int
    otherwise. On a range (non-empty range_end) the compare holds only if it holds
    for every key present in it; a missing key (or an empty range) compares as a kv
    whose version, create, mod revision and lease are 0, and a VALUE compare on it
    always fails."""

    key: bytes
    target: CompareTarget
    result: CompareResult
    operand: int | bytes
    range_end: bytes = b""


@dataclass(frozen=True, slots=True)
class TxnRequest:
    compare: tuple[Compare, ...] = ()
    success: tuple[RequestOp, ...] = ()
    failure: tuple[RequestOp, ...] = ()


RequestOp = RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest


@dataclass(frozen=True, slots=True)
class TxnResponse:
    revision: int
    succeeded: bool
    responses: tuple[ResponseOp, ...] = ()
    events: tuple[Event, ...] = field(default=())


ResponseOp = RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse


# -- compact ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompactResponse:
    revision: int
