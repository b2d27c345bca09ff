"""etcd v3's data model: a multi-version KV store with revisions, generations,
ranges at past revisions, txns and compaction (etcd v3.5 semantics).

Pure and deterministic (no clocks, threads or I/O), so that every Raft member that
applies the same commands reaches the same state; not wired into the member yet.

    store = MVCCStore()
    store.put(b"k", b"v")                 # -> PutResponse(revision=2, events=...)
    store.range(b"k", prefix_end(b"k"))   # -> RangeResponse(kvs=..., count=1)
"""

from .errors import (
    Compacted,
    DuplicateKey,
    EmptyKey,
    FutureRevision,
    InvalidCompare,
    KeyNotFound,
    LeaseNotFound,
    LeaseProvided,
    MVCCError,
    SnapshotError,
    TooManyOps,
    ValueProvided,
)
from .kv import Event, EventType, KeyValue, Revision
from .ranges import ALL_KEYS_END, prefix_end
from .requests import (
    CompactResponse,
    Compare,
    CompareResult,
    CompareTarget,
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
from .store import LeaseExists, MVCCStore
from .txn_check import DEFAULT_MAX_TXN_OPS

__all__ = [
    "ALL_KEYS_END",
    "DEFAULT_MAX_TXN_OPS",
    "CompactResponse",
    "Compacted",
    "Compare",
    "CompareResult",
    "CompareTarget",
    "DeleteRangeRequest",
    "DeleteRangeResponse",
    "DuplicateKey",
    "EmptyKey",
    "Event",
    "EventType",
    "FutureRevision",
    "InvalidCompare",
    "KeyNotFound",
    "KeyValue",
    "LeaseExists",
    "LeaseNotFound",
    "LeaseProvided",
    "MVCCError",
    "MVCCStore",
    "PutRequest",
    "PutResponse",
    "RangeRequest",
    "RangeResponse",
    "RequestOp",
    "ResponseOp",
    "Revision",
    "SnapshotError",
    "SortOrder",
    "SortTarget",
    "TooManyOps",
    "TxnRequest",
    "TxnResponse",
    "ValueProvided",
    "prefix_end",
]
