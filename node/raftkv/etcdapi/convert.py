"""Protobuf messages of etcd's API <-> the MVCC store's requests and responses
(`kv.mvcc.requests`), both ways, field for field. Pure functions: no member, no I/O.

Requests are checked here as etcd's `v3rpc/key.go` checks them before they reach the
store (empty key, unknown sort or compare enums), so a bad request is refused with
etcd's error and never proposed.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

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
from . import errors as X
from .proto import kv_pb2, rpc_pb2

Header = rpc_pb2.ResponseHeader

# -- requests --------------------------------------------------------------------------

E = TypeVar("E", bound=IntEnum)


def _enum(kind: type[E], value: int, error: X.EtcdError) -> E:
    """An enum field's value; proto3 keeps unknown numbers, etcd refuses them."""
    try:
        return kind(value)
    except ValueError:
        raise error from None


def range_request(m: rpc_pb2.RangeRequest) -> RangeRequest:
    if not m.key:
        raise X.EMPTY_KEY
    order = _enum(SortOrder, int(m.sort_order), X.INVALID_SORT)
    target = _enum(SortTarget, int(m.sort_target), X.INVALID_SORT)
    return RangeRequest(
        key=m.key,
        range_end=m.range_end,
        revision=m.revision,
        limit=m.limit,
        keys_only=m.keys_only,
        count_only=m.count_only,
        sort_order=order,
        sort_target=target,
        min_mod_revision=m.min_mod_revision,
        max_mod_revision=m.max_mod_revision,
        min_create_revision=m.min_create_revision,
        max_create_revision=m.max_create_revision,
    )


def put_request(m: rpc_pb2.PutRequest) -> PutRequest:
    if not m.key:
        raise X.EMPTY_KEY
    if m.ignore_value and m.value:
        raise X.VALUE_PROVIDED
    if m.ignore_lease and m.lease:
        raise X.LEASE_PROVIDED
    return PutRequest(m.key, m.value, m.lease, m.prev_kv, m.ignore_value, m.ignore_lease)


def delete_request(m: rpc_pb2.DeleteRangeRequest) -> DeleteRangeRequest:
    if not m.key:
        raise X.EMPTY_KEY
    return DeleteRangeRequest(m.key, m.range_end, m.prev_kv)


_OPERAND = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.VALUE: "value",
    CompareTarget.LEASE: "lease",
}


def compare(m: rpc_pb2.Compare) -> Compare:
    bad = X.EtcdError(X.Code.INVALID_ARGUMENT, "etcdserver: invalid compare")
    target = _enum(CompareTarget, int(m.target), bad)
    result = _enum(CompareResult, int(m.result), bad)
    # etcd reads the operand of the target's own oneof field; one that is not set
    # compares against its zero value.
    field = _OPERAND[target]
    operand: int | bytes = getattr(m, field)
    return Compare(m.key, target, result, operand, m.range_end)


def request_op(m: rpc_pb2.RequestOp) -> RequestOp:
    which = m.WhichOneof("request")
    if which == "request_range":
        return range_request(m.request_range)
    if which == "request_put":
        return put_request(m.request_put)
    if which == "request_delete_range":
        return delete_request(m.request_delete_range)
    if which == "request_txn":
        return txn_request(m.request_txn)
    raise X.EtcdError(X.Code.INVALID_ARGUMENT, "etcdserver: empty request in txn")


def txn_request(m: rpc_pb2.TxnRequest) -> TxnRequest:
    return TxnRequest(
        tuple(compare(c) for c in m.compare),
        tuple(request_op(o) for o in m.success),
        tuple(request_op(o) for o in m.failure),
    )


# -- responses -------------------------------------------------------------------------


def kv(k: KeyValue) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(
        key=k.key,
        create_revision=k.create_revision,
        mod_revision=k.mod_revision,
        version=k.version,
        value=k.value,
        lease=k.lease,
    )


def event(e: Event) -> kv_pb2.Event:
    out = kv_pb2.Event(type=int(e.type), kv=kv(e.kv))  # type: ignore[arg-type]
    if e.prev_kv is not None:
        out.prev_kv.CopyFrom(kv(e.prev_kv))
    return out


def with_revision(h: Header, revision: int) -> Header:
    return Header(
        cluster_id=h.cluster_id, member_id=h.member_id, revision=revision, raft_term=h.raft_term
    )


def range_response(r: RangeResponse, h: Header) -> rpc_pb2.RangeResponse:
    return rpc_pb2.RangeResponse(
        header=with_revision(h, r.revision), kvs=[kv(k) for k in r.kvs], more=r.more, count=r.count
    )


def put_response(r: PutResponse, h: Header) -> rpc_pb2.PutResponse:
    out = rpc_pb2.PutResponse(header=with_revision(h, r.revision))
    if r.prev_kv is not None:
        out.prev_kv.CopyFrom(kv(r.prev_kv))
    return out


def delete_response(r: DeleteRangeResponse, h: Header) -> rpc_pb2.DeleteRangeResponse:
    return rpc_pb2.DeleteRangeResponse(
        header=with_revision(h, r.revision), deleted=r.deleted, prev_kvs=[kv(k) for k in r.prev_kvs]
    )


def response_op(r: ResponseOp, h: Header) -> rpc_pb2.ResponseOp:
    if isinstance(r, RangeResponse):
        return rpc_pb2.ResponseOp(response_range=range_response(r, h))
    if isinstance(r, PutResponse):
        return rpc_pb2.ResponseOp(response_put=put_response(r, h))
    if isinstance(r, DeleteRangeResponse):
        return rpc_pb2.ResponseOp(response_delete_range=delete_response(r, h))
    return rpc_pb2.ResponseOp(response_txn=txn_response(r, h))


def txn_response(r: TxnResponse, h: Header) -> rpc_pb2.TxnResponse:
    """The responses inside a txn carry a header with only their revision, as
    etcd's (`newTxnResp` gives each op an empty header; only the outer response
    gets the server's)."""
    return rpc_pb2.TxnResponse(
        header=with_revision(h, r.revision),
        succeeded=r.succeeded,
        responses=[response_op(x, Header()) for x in r.responses],
    )
