"""What a NORMAL Raft entry carries since the MVCC store (format 2): one client request
of etcd v3's KV and lease APIs, plus the request id that deduplicates retries.

Encoded as a positional msgpack array, ``[2, request_id, kind, *fields]``, with
requests nested the same way inside a txn. Format 1 (the single-key `Command` of
`raftkv.kv.command`, still found in old logs) decodes to the equivalent format-2
request: a put or delete guarded by If-Match / If-None-Match becomes a txn comparing
the key's mod revision (or its absence), which is what it meant.

Decoding is total: every malformed input raises `CommandDecodeError` and nothing else,
so a committed entry that does not decode fails the same way on every member.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

from .alarm import AlarmAction, AlarmRequest, AlarmType
from .command import (
    MAX_REQUEST_ID_LEN,
    Command,
    CommandDecodeError,
    CommandError,
    Op,
)
from .mvcc.requests import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    SortOrder,
    SortTarget,
    TxnRequest,
)

FORMAT_VERSION = 2
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_MAX_DEPTH = 16
"""Nesting of txns inside txns; etcd bounds it only by --max-txn-ops, but a decoder
of untrusted bytes must not recurse without end."""


class Kind(IntEnum):
    NOOP = 0
    PUT = 1
    DELETE_RANGE = 2
    TXN = 3
    COMPACT = 4
    LEASE_GRANT = 5
    LEASE_REVOKE = 6
    ALARM = 7
    """etcd's AlarmRequest (`kv.alarm`); entries of members before alarms never hold it."""


@dataclass(frozen=True, slots=True)
class CompactRequest:
    revision: int


@dataclass(frozen=True, slots=True)
class LeaseGrantRequest:
    ttl: int
    id: int = 0
    """0: the state machine allocates one."""


@dataclass(frozen=True, slots=True)
class LeaseRevokeRequest:
    id: int


@dataclass(frozen=True, slots=True)
class NoopRequest:
    """Changes nothing: a write barrier that still takes a dedup slot."""


Body = (
    PutRequest
    | DeleteRangeRequest
    | TxnRequest
    | CompactRequest
    | LeaseGrantRequest
    | LeaseRevokeRequest
    | NoopRequest
    | AlarmRequest
)


@dataclass(frozen=True, slots=True)
class Proposal:
    body: Body
    request_id: bytes = b""

    def encode(self) -> bytes:
        try:
            return msgpack.packb(  # type: ignore[no-any-return]
                [FORMAT_VERSION, self.request_id, *_encode_body(self.body)], use_bin_type=True
            )
        except CommandError:
            raise
        except Exception as exc:  # wrong field types
            raise CommandError(f"cannot encode request: {exc}") from exc

    @staticmethod
    def decode(data: bytes) -> Proposal:
        try:
            obj = msgpack.unpackb(data, raw=False, use_list=False, max_map_len=0, max_ext_len=0)
        except Exception as exc:  # msgpack raises several types; callers want one
            raise CommandDecodeError(f"not a command: {exc}") from exc
        if type(obj) is not tuple or not obj:
            raise CommandDecodeError("not a command: expected an array")
        if obj[0] == 1 and type(obj[0]) is int:
            return from_legacy(Command.decode(data))
        if obj[0] != FORMAT_VERSION or type(obj[0]) is not int:
            raise CommandDecodeError(f"unsupported command format {obj[0]!r}")
        if len(obj) < 3:
            raise CommandDecodeError("not a command: too short")
        rid = obj[1]
        if type(rid) is not bytes or len(rid) > MAX_REQUEST_ID_LEN:
            raise CommandDecodeError("request id must be at most 64 bytes")
        return Proposal(_decode_body(obj[2:]), rid)


def request_id_of(data: bytes) -> bytes:
    """The request id of an encoded proposal (b"" when it does not decode)."""
    try:
        return Proposal.decode(data).request_id
    except CommandDecodeError:
        return b""


def from_legacy(cmd: Command) -> Proposal:
    """A format-1 command as the format-2 request it stands for."""
    key = cmd.key.encode()
    write: RequestOp
    if cmd.op == Op.PUT:
        write = PutRequest(key, cmd.value, prev_kv=True)
    elif cmd.op == Op.DELETE:
        write = DeleteRangeRequest(key, prev_kv=True)
    else:
        return Proposal(NoopRequest(), cmd.request_id)
    compares: list[Compare] = []
    if cmd.if_match is not None:
        compares.append(Compare(key, CompareTarget.MOD, CompareResult.EQUAL, cmd.if_match))
    if cmd.if_none_match:
        compares.append(Compare(key, CompareTarget.CREATE, CompareResult.EQUAL, 0))
    if not compares:
        return Proposal(write, cmd.request_id)
    txn = TxnRequest(tuple(compares), (write,), (RangeRequest(key, keys_only=True),))
    return Proposal(txn, cmd.request_id)


# -- encoding ----------------------------------------------------------------------


def _encode_body(b: Body) -> list[Any]:
    if isinstance(b, PutRequest):
        return [Kind.PUT, *_put(b)]
    if isinstance(b, DeleteRangeRequest):
        return [Kind.DELETE_RANGE, *_delete(b)]
    if isinstance(b, TxnRequest):
        return [Kind.TXN, _txn(b)]
    if isinstance(b, CompactRequest):
        return [Kind.COMPACT, b.revision]
    if isinstance(b, LeaseGrantRequest):
        return [Kind.LEASE_GRANT, b.ttl, b.id]
    if isinstance(b, LeaseRevokeRequest):
        return [Kind.LEASE_REVOKE, b.id]
    if isinstance(b, NoopRequest):
        return [Kind.NOOP]
    if isinstance(b, AlarmRequest):
        return [Kind.ALARM, int(b.action), b.member_id, int(b.alarm)]
    raise CommandError(f"not a request: {type(b).__name__}")


def _put(p: PutRequest) -> list[Any]:
    return [p.key, p.value, p.lease, p.prev_kv, p.ignore_value, p.ignore_lease]


def _delete(d: DeleteRangeRequest) -> list[Any]:
    return [d.key, d.range_end, d.prev_kv]


def _range(r: RangeRequest) -> list[Any]:
    return [
        r.key,
        r.range_end,
        r.revision,
        r.limit,
        r.keys_only,
        r.count_only,
        int(r.sort_order),
        int(r.sort_target),
        r.min_mod_revision,
        r.max_mod_revision,
        r.min_create_revision,
        r.max_create_revision,
    ]


def _op(op: RequestOp) -> list[Any]:
    if isinstance(op, RangeRequest):
        return [0, _range(op)]
    if isinstance(op, PutRequest):
        return [1, _put(op)]
    if isinstance(op, DeleteRangeRequest):
        return [2, _delete(op)]
    return [3, _txn(op)]


def _txn(t: TxnRequest) -> list[Any]:
    return [
        [[c.key, c.range_end, int(c.target), int(c.result), c.operand] for c in t.compare],
        [_op(o) for o in t.success],
        [_op(o) for o in t.failure],
    ]


# -- decoding ----------------------------------------------------------------------


def _fail(what: str) -> CommandDecodeError:
    return CommandDecodeError(f"malformed request: {what}")


def _b(x: Any, what: str) -> bytes:
    if type(x) is not bytes:
        raise _fail(f"{what} must be bytes")
    return x


def _i(x: Any, what: str) -> int:
    if type(x) is not int or not _I64_MIN <= x <= _I64_MAX:
        raise _fail(f"{what} must be an int64")
    return x


def _flag(x: Any, what: str) -> bool:
    if type(x) is not bool:
        raise _fail(f"{what} must be a boolean")
    return x


def _arr(x: Any, n: int, what: str) -> tuple[Any, ...]:
    if type(x) is not tuple or len(x) != n:
        raise _fail(f"{what} must be an array of {n}")
    return x


def _seq(x: Any, what: str) -> tuple[Any, ...]:
    if type(x) is not tuple:
        raise _fail(f"{what} must be an array")
    return x


def _decode_body(obj: tuple[Any, ...]) -> Body:
    kind, fields = obj[0], obj[1:]
    if kind == Kind.PUT and type(kind) is int:
        return _dec_put(fields)
    if kind == Kind.DELETE_RANGE and type(kind) is int:
        return _dec_delete(fields)
    if kind == Kind.TXN and type(kind) is int:
        return _dec_txn(_arr(fields, 1, "txn")[0], 0)
    if kind == Kind.COMPACT and type(kind) is int:
        return CompactRequest(_i(_arr(fields, 1, "compact")[0], "revision"))
    if kind == Kind.LEASE_GRANT and type(kind) is int:
        ttl, lid = _arr(fields, 2, "lease grant")
        return LeaseGrantRequest(_i(ttl, "ttl"), _i(lid, "lease id"))
    if kind == Kind.LEASE_REVOKE and type(kind) is int:
        return LeaseRevokeRequest(_i(_arr(fields, 1, "lease revoke")[0], "lease id"))
    if kind == Kind.NOOP and type(kind) is int and not fields:
        return NoopRequest()
    if kind == Kind.ALARM and type(kind) is int:
        return _dec_alarm(fields)
    raise CommandDecodeError(f"unknown request kind {kind!r}")


def _dec_alarm(f: Any) -> AlarmRequest:
    action, member_id, alarm = _arr(f, 3, "alarm")
    if type(action) is not int or action not in AlarmAction.__members__.values():
        raise _fail("alarm action")
    if type(alarm) is not int or alarm not in AlarmType.__members__.values():
        raise _fail("alarm type")
    if type(member_id) is not int or not 0 <= member_id < 1 << 64:
        raise _fail("alarm member id must be a uint64")
    return AlarmRequest(AlarmAction(action), member_id, AlarmType(alarm))


def _dec_put(f: Any) -> PutRequest:
    key, value, lease, prev_kv, ignore_value, ignore_lease = _arr(f, 6, "put")
    return PutRequest(
        _b(key, "key"),
        _b(value, "value"),
        _i(lease, "lease"),
        _flag(prev_kv, "prev_kv"),
        _flag(ignore_value, "ignore_value"),
        _flag(ignore_lease, "ignore_lease"),
    )


def _dec_delete(f: Any) -> DeleteRangeRequest:
    key, range_end, prev_kv = _arr(f, 3, "delete_range")
    return DeleteRangeRequest(_b(key, "key"), _b(range_end, "range_end"), _flag(prev_kv, "prev_kv"))


def _dec_range(f: Any) -> RangeRequest:
    (key, end, rev, limit, keys_only, count_only, order, target, *bounds) = _arr(f, 12, "range")
    if type(order) is not int or order not in SortOrder.__members__.values():
        raise _fail("sort_order")
    if type(target) is not int or target not in SortTarget.__members__.values():
        raise _fail("sort_target")
    a, b, c, d = (_i(x, "revision bound") for x in bounds)
    return RangeRequest(
        _b(key, "key"),
        _b(end, "range_end"),
        _i(rev, "revision"),
        _i(limit, "limit"),
        _flag(keys_only, "keys_only"),
        _flag(count_only, "count_only"),
        SortOrder(order),
        SortTarget(target),
        a,
        b,
        c,
        d,
    )


def _dec_compare(f: Any) -> Compare:
    key, end, target, result, operand = _arr(f, 5, "compare")
    if type(target) is not int or target not in CompareTarget.__members__.values():
        raise _fail("compare target")
    if type(result) is not int or result not in CompareResult.__members__.values():
        raise _fail("compare result")
    if type(operand) is not bytes:
        operand = _i(operand, "compare operand")
    return Compare(
        _b(key, "key"), CompareTarget(target), CompareResult(result), operand, _b(end, "range_end")
    )


def _dec_op(f: Any, depth: int) -> RequestOp:
    tag, inner = _arr(f, 2, "txn op")
    if tag == 0 and type(tag) is int:
        return _dec_range(inner)
    if tag == 1 and type(tag) is int:
        return _dec_put(inner)
    if tag == 2 and type(tag) is int:
        return _dec_delete(inner)
    if tag == 3 and type(tag) is int:
        return _dec_txn(inner, depth + 1)
    raise _fail(f"unknown txn op {tag!r}")


def _dec_txn(f: Any, depth: int) -> TxnRequest:
    if depth > _MAX_DEPTH:
        raise _fail("txns nested too deep")
    compare, success, failure = _arr(f, 3, "txn")
    return TxnRequest(
        tuple(_dec_compare(c) for c in _seq(compare, "compare")),
        tuple(_dec_op(o, depth) for o in _seq(success, "success")),
        tuple(_dec_op(o, depth) for o in _seq(failure, "failure")),
    )
