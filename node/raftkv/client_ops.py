"""The client's side of etcd v3's data model, with no I/O: key-values with their
revisions, compares, request ops, the `Txn` builder, the results, and their JSON (the
gateway shapes of `raftkv.api.etcdjson`: keys and values base64).

`raftkv.client` sends what these build and reads answers into these results; the
coordination recipes (`raftkv.concurrency`) and the watch (`raftkv.client_watch`) use
the same types.

Keys are bytes on the wire; everywhere a key is taken, a `str` is accepted and encoded
as UTF-8. Ranges follow etcd: `range_end` empty = the one key, `b"\\0"` = every key
>= key, `prefix=True` = every key starting with key (`prefix_end`).

A comparison is written as Python comparison on a target:

    client.txn().if_(Compare.mod("k") == 5).then(Op.put("k", b"v")).else_(Op.get("k")).commit()

Answers that are off the contract raise `ValueError` (pydantic's `ValidationError` is
one) here; the client turns that into its `BadResponse`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, Literal, TypedDict, TypeVar

from .api import schema

Key = str | bytes

# -- keys and ranges --------------------------------------------------------------------


def key_bytes(key: Key, what: str = "key") -> bytes:
    """`key` as bytes (UTF-8 for a str); an empty key is refused here, not by a member."""
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"{what} must be str or bytes, not {type(key).__name__}")
    if not key:
        raise ValueError(f"{what} must not be empty")
    return bytes(key)


def prefix_end(prefix: bytes) -> bytes:
    """etcd's GetPrefixRangeEnd: the smallest key greater than every key starting with
    `prefix` (b"\\0", meaning "to the end", when there is none)."""
    b = bytearray(prefix)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b"\0"
    b[-1] += 1
    return bytes(b)


def key_range(
    key: Key, range_end: Key | None = None, *, prefix: bool = False
) -> tuple[bytes, bytes]:
    """(key, range_end) on the wire. `prefix` and `range_end` exclude each other; an
    empty prefix is every key."""
    if prefix:
        if range_end is not None:
            raise ValueError("give prefix or range_end, not both")
        if not isinstance(key, str | bytes | bytearray):
            raise TypeError(f"key must be str or bytes, not {type(key).__name__}")
        k = key.encode() if isinstance(key, str) else bytes(key)
        return (k, prefix_end(k)) if k else (b"\0", b"\0")
    k = key_bytes(key)
    if range_end is None:
        return k, b""
    return k, range_end.encode() if isinstance(range_end, str) else bytes(range_end)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str, where: str) -> bytes:
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{where} is not base64: {exc}") from None


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """Who answered, and the store revision and Raft term the answer is as of."""

    cluster_id: str
    member_id: int
    revision: int
    raft_term: int


@dataclass(frozen=True, slots=True)
class KV:
    """A key with etcd's metadata. `version` counts puts since creation; `lease` is 0
    for a key without a lease."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @property
    def key_str(self) -> str:
        return self.key.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KV]
    more: bool
    count: int
    header: Header


@dataclass(frozen=True, slots=True)
class PutResult:
    header: Header
    prev_kv: KV | None = None


@dataclass(frozen=True, slots=True)
class DeleteRangeResult:
    header: Header
    deleted: int
    prev_kvs: list[KV] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TxnResult:
    header: Header
    succeeded: bool
    responses: list[RangeResult | PutResult | DeleteRangeResult | TxnResult]
    replayed: bool = False
    """A retry of a txn a member had already applied (the first answer was lost): the
    branch taken is known, the responses are not (empty); read again if needed."""

    @property
    def revision(self) -> int:
        return self.header.revision


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    id: int
    ttl: int
    """The granted TTL in seconds (a member raises a too small one to its minimum)."""


@dataclass(frozen=True, slots=True)
class LeaseTTL:
    id: int
    ttl: int
    """Seconds left; -1 when the lease does not exist (expired or revoked)."""
    granted_ttl: int
    keys: list[bytes] = field(default_factory=list)


# -- compares -----------------------------------------------------------------------------


class Target(StrEnum):
    VERSION = "VERSION"
    CREATE = "CREATE"
    MOD = "MOD"
    VALUE = "VALUE"
    LEASE = "LEASE"


_OPERAND_FIELD = {
    Target.VERSION: "version",
    Target.CREATE: "create_revision",
    Target.MOD: "mod_revision",
    Target.VALUE: "value",
    Target.LEASE: "lease",
}

Result = Literal["EQUAL", "NOT_EQUAL", "LESS", "GREATER"]


@dataclass(frozen=True, slots=True)
class Compare:
    """One txn condition: `target` of `key` (or of every key in [key, range_end))
    `result` `operand`. Build with `Compare.mod("k") == 5` and friends."""

    key: bytes
    target: Target
    result: Result
    operand: int | bytes
    range_end: bytes = b""

    @staticmethod
    def version(key: Key, range_end: Key | None = None, *, prefix: bool = False) -> Operand:
        return Operand(Target.VERSION, *key_range(key, range_end, prefix=prefix))

    @staticmethod
    def create(key: Key, range_end: Key | None = None, *, prefix: bool = False) -> Operand:
        """The create revision (0 for an absent key: `Compare.create(k) == 0`)."""
        return Operand(Target.CREATE, *key_range(key, range_end, prefix=prefix))

    @staticmethod
    def mod(key: Key, range_end: Key | None = None, *, prefix: bool = False) -> Operand:
        return Operand(Target.MOD, *key_range(key, range_end, prefix=prefix))

    @staticmethod
    def value(key: Key, range_end: Key | None = None, *, prefix: bool = False) -> Operand:
        return Operand(Target.VALUE, *key_range(key, range_end, prefix=prefix))

    @staticmethod
    def lease(key: Key, range_end: Key | None = None, *, prefix: bool = False) -> Operand:
        return Operand(Target.LEASE, *key_range(key, range_end, prefix=prefix))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": _b64(self.key),
            "target": self.target.value,
            "result": self.result,
        }
        if self.range_end:
            out["range_end"] = _b64(self.range_end)
        name = _OPERAND_FIELD[self.target]
        out[name] = _b64(self.operand) if isinstance(self.operand, bytes) else self.operand
        return out


class Operand:
    """What a `Compare` compares; the comparison operators make the `Compare`."""

    __slots__ = ("key", "range_end", "target")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, target: Target, key: bytes, range_end: bytes) -> None:
        self.target = target
        self.key = key
        self.range_end = range_end

    def _cmp(self, result: Result, other: object) -> Compare:
        operand: int | bytes
        if self.target is Target.VALUE:
            if isinstance(other, str):
                other = other.encode()
            if not isinstance(other, bytes | bytearray):
                raise TypeError("a VALUE compare takes bytes or str")
            operand = bytes(other)
        else:
            if isinstance(other, bool) or not isinstance(other, int):
                raise TypeError(f"a {self.target.value} compare takes an int")
            operand = other
        return Compare(self.key, self.target, result, operand, self.range_end)

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._cmp("EQUAL", other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._cmp("NOT_EQUAL", other)

    def __lt__(self, other: object) -> Compare:
        return self._cmp("LESS", other)

    def __gt__(self, other: object) -> Compare:
        return self._cmp("GREATER", other)


# -- request ops --------------------------------------------------------------------------

SortOrder = Literal["NONE", "ASCEND", "DESCEND"]
SortTarget = Literal["KEY", "VERSION", "CREATE", "MOD", "VALUE"]


class RangeOptions(TypedDict, total=False):
    """The options of a range read besides the keys (etcd's RangeRequest)."""

    revision: int
    limit: int
    keys_only: bool
    count_only: bool
    sort_order: SortOrder
    sort_target: SortTarget
    min_mod_revision: int
    max_mod_revision: int
    min_create_revision: int
    max_create_revision: int


@dataclass(frozen=True, slots=True)
class RangeOp:
    key: bytes
    range_end: bytes = b""
    revision: int = 0
    limit: int = 0
    keys_only: bool = False
    count_only: bool = False
    sort_order: SortOrder = "NONE"
    sort_target: SortTarget = "KEY"
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": _b64(self.key)}
        if self.range_end:
            out["range_end"] = _b64(self.range_end)
        for name in (
            "revision",
            "limit",
            "min_mod_revision",
            "max_mod_revision",
            "min_create_revision",
            "max_create_revision",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0")
            if v:
                out[name] = v
        if self.keys_only:
            out["keys_only"] = True
        if self.count_only:
            out["count_only"] = True
        if self.sort_order != "NONE":
            out["sort_order"] = self.sort_order
            out["sort_target"] = self.sort_target
        return out


@dataclass(frozen=True, slots=True)
class PutOp:
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": _b64(self.key), "value": _b64(self.value)}
        if self.lease:
            out["lease"] = self.lease
        for name in ("prev_kv", "ignore_value", "ignore_lease"):
            if getattr(self, name):
                out[name] = True
        return out


@dataclass(frozen=True, slots=True)
class DeleteOp:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": _b64(self.key)}
        if self.range_end:
            out["range_end"] = _b64(self.range_end)
        if self.prev_kv:
            out["prev_kv"] = True
        return out


@dataclass(frozen=True, slots=True)
class TxnOp:
    compare: tuple[Compare, ...] = ()
    success: tuple[RequestOp, ...] = ()
    failure: tuple[RequestOp, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "compare": [c.to_json() for c in self.compare],
            "success": [op_json(o) for o in self.success],
            "failure": [op_json(o) for o in self.failure],
        }


RequestOp = RangeOp | PutOp | DeleteOp | TxnOp


def op_json(op: RequestOp) -> dict[str, Any]:
    if isinstance(op, RangeOp):
        return {"request_range": op.to_json()}
    if isinstance(op, PutOp):
        return {"request_put": op.to_json()}
    if isinstance(op, DeleteOp):
        return {"request_delete_range": op.to_json()}
    if isinstance(op, TxnOp):
        return {"request_txn": op.to_json()}
    raise TypeError(f"not a txn op: {op!r}")


def _value_bytes(value: bytes | str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError("value must be bytes or str")
    return bytes(value)


def lease_id(lease: int) -> int:
    if isinstance(lease, bool) or not isinstance(lease, int) or lease < 0:
        raise ValueError("a lease id is an integer >= 0 (0: no lease)")
    return lease


class Op:
    """Constructors of txn ops (etcd's clientv3.OpGet / OpPut / OpDelete / OpTxn)."""

    @staticmethod
    def get(
        key: Key,
        range_end: Key | None = None,
        *,
        prefix: bool = False,
        revision: int = 0,
        limit: int = 0,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: SortOrder = "NONE",
        sort_target: SortTarget = "KEY",
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> RangeOp:
        k, end = key_range(key, range_end, prefix=prefix)
        return RangeOp(
            k,
            end,
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

    @staticmethod
    def put(
        key: Key,
        value: bytes | str,
        *,
        lease: int = 0,
        prev_kv: bool = False,
        ignore_value: bool = False,
        ignore_lease: bool = False,
    ) -> PutOp:
        return PutOp(
            key_bytes(key),
            _value_bytes(value),
            lease_id(lease),
            prev_kv,
            ignore_value,
            ignore_lease,
        )

    @staticmethod
    def delete(
        key: Key, range_end: Key | None = None, *, prefix: bool = False, prev_kv: bool = False
    ) -> DeleteOp:
        k, end = key_range(key, range_end, prefix=prefix)
        return DeleteOp(k, end, prev_kv)

    @staticmethod
    def txn(
        compare: Iterable[Compare] = (),
        success: Iterable[RequestOp] = (),
        failure: Iterable[RequestOp] = (),
    ) -> TxnOp:
        return TxnOp(tuple(compare), tuple(success), tuple(failure))


R = TypeVar("R")


class Txn(Generic[R]):
    """A transaction being written: `if_` (all compares must hold), `then` (ops run
    when they do), `else_` (ops run when they do not), then `commit()`, which sends it
    (for `AsyncClient`, `commit()` returns an awaitable). Like etcd's clientv3.Txn,
    the parts come in that order."""

    def __init__(self, commit: Callable[[TxnOp], R]) -> None:
        self._commit = commit
        self._compare: list[Compare] = []
        self._success: list[RequestOp] = []
        self._failure: list[RequestOp] = []
        self._stage = 0

    def _at(self, stage: int, name: str) -> None:
        if self._stage > stage:
            raise ValueError(f"{name}() must come before the later parts of the txn")
        self._stage = stage

    def if_(self, *compares: Compare) -> Txn[R]:
        self._at(0, "if_")
        for c in compares:
            if not isinstance(c, Compare):
                raise TypeError(
                    f"if_() takes Compare objects (e.g. Compare.mod(k) == 5), not {c!r}"
                )
        self._compare.extend(compares)
        return self

    def then(self, *ops: RequestOp) -> Txn[R]:
        self._at(1, "then")
        self._success.extend(ops)
        return self

    def else_(self, *ops: RequestOp) -> Txn[R]:
        self._at(2, "else_")
        self._failure.extend(ops)
        return self

    def op(self) -> TxnOp:
        """The txn as an op (to nest it in another txn)."""
        return TxnOp(tuple(self._compare), tuple(self._success), tuple(self._failure))

    def commit(self) -> R:
        return self._commit(self.op())


# -- reading answers ----------------------------------------------------------------------


def header_of(h: schema.Header) -> Header:
    return Header(h.cluster_id, h.member_id, h.revision, h.raft_term)


def kv_of(kv: schema.EtcdKeyValue, where: str = "kv") -> KV:
    return KV(
        _unb64(kv.key, f"{where}.key"),
        _unb64(kv.value, f"{where}.value"),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease,
    )


def range_of(r: schema.RangeAnswer) -> RangeResult:
    return RangeResult(
        [kv_of(kv, f"kvs.{i}") for i, kv in enumerate(r.kvs)], r.more, r.count, header_of(r.header)
    )


def put_of(r: schema.PutAnswer) -> PutResult:
    return PutResult(
        header_of(r.header), None if r.prev_kv is None else kv_of(r.prev_kv, "prev_kv")
    )


def delete_of(r: schema.DeleteRangeAnswer) -> DeleteRangeResult:
    return DeleteRangeResult(
        header_of(r.header),
        r.deleted,
        [kv_of(kv, f"prev_kvs.{i}") for i, kv in enumerate(r.prev_kvs)],
    )


def txn_of(r: schema.TxnAnswer) -> TxnResult:
    out: list[RangeResult | PutResult | DeleteRangeResult | TxnResult] = []
    for i, op in enumerate(r.responses):
        given = [
            x
            for x in (op.response_range, op.response_put, op.response_delete_range, op.response_txn)
            if x is not None
        ]
        if len(given) != 1:
            raise ValueError(f"responses.{i} must hold exactly one response_*")
        x = given[0]
        if isinstance(x, schema.RangeAnswer):
            out.append(range_of(x))
        elif isinstance(x, schema.PutAnswer):
            out.append(put_of(x))
        elif isinstance(x, schema.DeleteRangeAnswer):
            out.append(delete_of(x))
        else:
            out.append(txn_of(x))
    return TxnResult(header_of(r.header), r.succeeded, out, r.replayed)


def parse_range(body: bytes) -> RangeResult:
    return range_of(schema.RangeAnswer.model_validate_json(body))


def parse_txn(body: bytes) -> TxnResult:
    return txn_of(schema.TxnAnswer.model_validate_json(body))


def parse_header(body: bytes) -> Header:
    return header_of(schema.HeaderAnswer.model_validate_json(body).header)


def parse_range_delete(body: bytes) -> int:
    return schema.RangeDeleteResult.model_validate_json(body).deleted


def parse_lease_grant(body: bytes) -> LeaseGrant:
    g = schema.LeaseGrantAnswer.model_validate_json(body)
    return LeaseGrant(g.id, g.ttl)


def parse_lease_revoke(body: bytes) -> int:
    return schema.LeaseRevokeAnswer.model_validate_json(body).deleted


def parse_keepalive(body: bytes) -> int:
    return schema.LeaseKeepAliveAnswer.model_validate_json(body).ttl


def parse_time_to_live(body: bytes) -> LeaseTTL:
    t = schema.LeaseTimeToLiveAnswer.model_validate_json(body)
    keys = [_unb64(k, f"keys.{i}") for i, k in enumerate(t.keys)]
    return LeaseTTL(t.id, t.ttl, t.granted_ttl, keys)


def parse_leases(body: bytes) -> list[int]:
    return [x.id for x in schema.LeaseList.model_validate_json(body).leases]


def kv_from_headers(key: bytes, value: bytes, headers: Any) -> KV:
    """A single-key GET's answer: the value is the body, the metadata in headers."""

    def num(name: str) -> int:
        raw = headers.get(name)
        if raw is None or not raw.strip().isdigit():
            raise ValueError(f"GET answer without a numeric {name} header (got {raw!r})")
        return int(raw)

    return KV(
        key,
        value,
        num("X-Raftkv-Create-Revision"),
        num("X-Raftkv-Revision"),
        num("X-Raftkv-Version"),
        num("X-Raftkv-Lease"),
    )


__all__ = [
    "KV",
    "Compare",
    "DeleteOp",
    "DeleteRangeResult",
    "Header",
    "LeaseGrant",
    "LeaseTTL",
    "Op",
    "Operand",
    "PutOp",
    "PutResult",
    "RangeOp",
    "RangeOptions",
    "RangeResult",
    "RequestOp",
    "Target",
    "Txn",
    "TxnOp",
    "TxnResult",
    "key_bytes",
    "key_range",
    "prefix_end",
]
