"""JSON for etcd v3 requests and answers, in the shape of etcd's own JSON gateway
(grpc-gateway over etcdserverpb): bytes (keys, values, range ends) are base64, enums
are their names, request ops are `request_range` / `request_put` /
`request_delete_range` / `request_txn` and answers `response_*`.

Two differences from the gateway, both for people reading answers by hand: int64
fields are JSON numbers (requests accept numbers or decimal strings, as the gateway
does), and fields are always present rather than omitted when zero.

Parsing never trusts its input: anything that does not fit raises `BadRequest` with
the path of the offending field.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..kv.mvcc.kv import Event, KeyValue
from ..kv.mvcc.requests import (
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
from ..server import errors as E

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_MAX_DEPTH = 16

_RESULTS = {
    "EQUAL": CompareResult.EQUAL,
    "=": CompareResult.EQUAL,
    "GREATER": CompareResult.GREATER,
    ">": CompareResult.GREATER,
    "LESS": CompareResult.LESS,
    "<": CompareResult.LESS,
    "NOT_EQUAL": CompareResult.NOT_EQUAL,
    "!=": CompareResult.NOT_EQUAL,
}
_OPERAND_FIELD = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.VALUE: "value",
    CompareTarget.LEASE: "lease",
}


def _bad(path: str, what: str) -> E.BadRequest:
    return E.BadRequest(f"{path}: {what}", code="invalid_request")


def _at(path: str, field: str | int) -> str:
    """A field's path, spelled only when an error needs it: building it for every
    field of every request cost as much as the rest of the parsing."""
    if isinstance(field, int):
        return f"{path}[{field}]"
    return f"{path}.{field}" if field else path


def _obj(x: Any, path: str, field: str | int = "") -> dict[str, Any]:
    if not isinstance(x, dict):
        raise _bad(_at(path, field), "must be an object")
    return x


def b64(x: Any, path: str, field: str = "") -> bytes:
    if x is None:
        return b""
    if not isinstance(x, str):
        raise _bad(_at(path, field), "must be a base64 string")
    try:
        return base64.b64decode(x, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(_at(path, field), "is not valid base64") from None


def i64(x: Any, path: str, field: str = "") -> int:
    if x is None:
        return 0
    if type(x) is int and _I64_MIN <= x <= _I64_MAX:
        return x
    if isinstance(x, bool):
        raise _bad(_at(path, field), "must be an integer")
    if isinstance(x, str):
        s = x.strip()
        if not s.lstrip("-").isdigit() or len(s) > 20:
            raise _bad(_at(path, field), "must be an integer")
        x = int(s)
    if not isinstance(x, int) or not _I64_MIN <= x <= _I64_MAX:
        raise _bad(_at(path, field), "must be a 64-bit integer")
    return x


def flag(x: Any, path: str, field: str = "") -> bool:
    if x is None:
        return False
    if not isinstance(x, bool):
        raise _bad(_at(path, field), "must be true or false")
    return x


def _enum_names(enum: Any) -> dict[str, Any]:
    return dict(enum.__members__)


_SORT_ORDERS = _enum_names(SortOrder)
_SORT_TARGETS = _enum_names(SortTarget)
_TARGETS = _enum_names(CompareTarget)


def _enum(x: Any, names: dict[str, Any], path: str, field: str, default: Any) -> Any:
    if x is None:
        return default
    if isinstance(x, str):
        v = names.get(x)
        if v is None:
            v = names.get(x.upper())
        if v is not None:
            return v
    if isinstance(x, int) and not isinstance(x, bool):
        for v in names.values():
            if int(v) == x:
                return v
    allowed = ", ".join(k for k in names if k.isalpha() or "_" in k)
    raise _bad(_at(path, field), f"must be one of {allowed}")


# -- requests ----------------------------------------------------------------------


def range_request(d: Any, path: str = "range") -> RangeRequest:
    o = _obj(d, path)
    g = o.get
    return RangeRequest(
        b64(g("key"), path, "key"),
        b64(g("range_end"), path, "range_end"),
        i64(g("revision"), path, "revision"),
        i64(g("limit"), path, "limit"),
        flag(g("keys_only"), path, "keys_only"),
        flag(g("count_only"), path, "count_only"),
        _enum(g("sort_order"), _SORT_ORDERS, path, "sort_order", SortOrder.NONE),
        _enum(g("sort_target"), _SORT_TARGETS, path, "sort_target", SortTarget.KEY),
        i64(g("min_mod_revision"), path, "min_mod_revision"),
        i64(g("max_mod_revision"), path, "max_mod_revision"),
        i64(g("min_create_revision"), path, "min_create_revision"),
        i64(g("max_create_revision"), path, "max_create_revision"),
    )


def put_request(d: Any, path: str = "put") -> PutRequest:
    o = _obj(d, path)
    g = o.get
    return PutRequest(
        b64(g("key"), path, "key"),
        b64(g("value"), path, "value"),
        i64(g("lease"), path, "lease"),
        flag(g("prev_kv"), path, "prev_kv"),
        flag(g("ignore_value"), path, "ignore_value"),
        flag(g("ignore_lease"), path, "ignore_lease"),
    )


def delete_request(d: Any, path: str = "delete_range") -> DeleteRangeRequest:
    o = _obj(d, path)
    return DeleteRangeRequest(
        b64(o.get("key"), path, "key"),
        b64(o.get("range_end"), path, "range_end"),
        flag(o.get("prev_kv"), path, "prev_kv"),
    )


def compare(d: Any, path: str) -> Compare:
    o = _obj(d, path)
    target = _enum(o.get("target"), _TARGETS, path, "target", None)
    if target is None:
        raise _bad(_at(path, "target"), "is required (VERSION, CREATE, MOD, VALUE or LEASE)")
    result = _enum(o.get("result"), _RESULTS, path, "result", CompareResult.EQUAL)
    field = _OPERAND_FIELD[target]
    operand: int | bytes
    if target is CompareTarget.VALUE:
        operand = b64(o.get(field), path, field)
    else:
        operand = i64(o.get(field), path, field)
    return Compare(
        b64(o.get("key"), path, "key"),
        target,
        result,
        operand,
        b64(o.get("range_end"), path, "range_end"),
    )


_OP_KINDS = ("request_range", "request_put", "request_delete_range", "request_txn")


def request_op(d: Any, path: str, depth: int) -> RequestOp:
    o = _obj(d, path)
    if len(o) == 1:
        k = next(iter(o))
        if k not in _OP_KINDS:
            k = ""
    else:
        keys = [k for k in _OP_KINDS if k in o]
        k = keys[0] if len(keys) == 1 else ""
    if not k:
        raise _bad(
            path,
            "must hold exactly one of request_range, request_put, request_delete_range, "
            "request_txn",
        )
    if k == "request_put":
        return put_request(o[k], f"{path}.{k}")
    if k == "request_range":
        return range_request(o[k], f"{path}.{k}")
    if k == "request_delete_range":
        return delete_request(o[k], f"{path}.{k}")
    return txn_request(o[k], f"{path}.{k}", depth + 1)


def _list(x: Any, path: str, field: str) -> list[Any]:
    if x is None:
        return []
    if not isinstance(x, list):
        raise _bad(_at(path, field), "must be an array")
    return x


def txn_request(d: Any, path: str = "txn", depth: int = 0) -> TxnRequest:
    if depth > _MAX_DEPTH:
        raise _bad(path, "txns nested too deep")
    o = _obj(d, path)
    cmp = _list(o.get("compare"), path, "compare")
    succ = _list(o.get("success"), path, "success")
    fail = _list(o.get("failure"), path, "failure")
    return TxnRequest(
        tuple(compare(c, f"{path}.compare[{i}]") for i, c in enumerate(cmp)),
        tuple(request_op(r, f"{path}.success[{i}]", depth) for i, r in enumerate(succ)),
        tuple(request_op(r, f"{path}.failure[{i}]", depth) for i, r in enumerate(fail)),
    )


# -- answers -----------------------------------------------------------------------


def b64s(b: bytes) -> str:
    return base64.b64encode(b).decode()


def kv_json(kv: KeyValue) -> dict[str, Any]:
    return {
        "key": b64s(kv.key),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "value": b64s(kv.value),
        "lease": kv.lease,
    }


def event_json(ev: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"type": ev.type.name, "kv": kv_json(ev.kv)}
    if ev.prev_kv is not None:
        out["prev_kv"] = kv_json(ev.prev_kv)
    return out


def range_json(r: RangeResponse, header: dict[str, Any]) -> dict[str, Any]:
    return {
        "header": header,
        "kvs": [kv_json(kv) for kv in r.kvs],
        "more": r.more,
        "count": r.count,
    }


def put_json(r: PutResponse, header: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"header": header}
    if r.prev_kv is not None:
        out["prev_kv"] = kv_json(r.prev_kv)
    return out


def delete_json(r: DeleteRangeResponse, header: dict[str, Any]) -> dict[str, Any]:
    return {
        "header": header,
        "deleted": r.deleted,
        "prev_kvs": [kv_json(kv) for kv in r.prev_kvs],
    }


def response_op(r: ResponseOp, header: dict[str, Any]) -> dict[str, Any]:
    h = {**header, "revision": r.revision}
    if isinstance(r, RangeResponse):
        return {"response_range": range_json(r, h)}
    if isinstance(r, PutResponse):
        return {"response_put": put_json(r, h)}
    if isinstance(r, DeleteRangeResponse):
        return {"response_delete_range": delete_json(r, h)}
    return {"response_txn": txn_json(r, h)}


def txn_json(r: TxnResponse, header: dict[str, Any]) -> dict[str, Any]:
    return {
        "header": header,
        "succeeded": r.succeeded,
        "responses": [response_op(x, header) for x in r.responses],
    }
