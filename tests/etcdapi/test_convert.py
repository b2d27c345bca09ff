"""etcd's protobuf requests become the store's requests (and back) field for field;
bad requests are refused with etcd's error before anything is proposed."""

from __future__ import annotations

import grpc
import pytest

from raftkv.etcdapi import convert as C
from raftkv.etcdapi import errors as X
from raftkv.etcdapi.proto import rpc_pb2 as pb
from raftkv.kv.machine import Failure
from raftkv.kv.mvcc import MVCCStore
from raftkv.kv.mvcc.errors import Compacted, FutureRevision
from raftkv.kv.mvcc.requests import (
    CompareResult,
    CompareTarget,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
)
from raftkv.server import errors as E


def test_range_request_keeps_every_option() -> None:
    m = pb.RangeRequest(
        key=b"a",
        range_end=b"b",
        limit=3,
        revision=7,
        sort_order=pb.RangeRequest.DESCEND,
        sort_target=pb.RangeRequest.MOD,
        keys_only=True,
        count_only=True,
        min_mod_revision=1,
        max_mod_revision=2,
        min_create_revision=3,
        max_create_revision=4,
    )
    assert C.range_request(m) == RangeRequest(
        b"a", b"b", 7, 3, True, True, SortOrder.DESCEND, SortTarget.MOD, 1, 2, 3, 4
    )


def test_empty_keys_and_unknown_enums_are_refused_as_etcd_does() -> None:
    with pytest.raises(X.EtcdError) as e:
        C.range_request(pb.RangeRequest())
    assert e.value == X.EMPTY_KEY
    with pytest.raises(X.EtcdError):
        C.put_request(pb.PutRequest())
    with pytest.raises(X.EtcdError) as e:
        C.range_request(pb.RangeRequest(key=b"a", sort_order=9))  # type: ignore[arg-type]
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(X.EtcdError) as e:
        C.put_request(pb.PutRequest(key=b"a", value=b"v", ignore_value=True))
    assert e.value == X.VALUE_PROVIDED


def test_txn_compares_read_the_operand_of_their_target() -> None:
    m = pb.TxnRequest(
        compare=[
            pb.Compare(key=b"a", target=pb.Compare.MOD, result=pb.Compare.LESS, mod_revision=5),
            pb.Compare(key=b"b", target=pb.Compare.VALUE, value=b"x"),
            pb.Compare(key=b"c", target=pb.Compare.VERSION),  # unset operand: 0
        ],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=b"a", value=b"1"))],
        failure=[pb.RequestOp(request_txn=pb.TxnRequest())],
    )
    t = C.txn_request(m)
    assert [(c.target, c.result, c.operand) for c in t.compare] == [
        (CompareTarget.MOD, CompareResult.LESS, 5),
        (CompareTarget.VALUE, CompareResult.EQUAL, b"x"),
        (CompareTarget.VERSION, CompareResult.EQUAL, 0),
    ]
    assert t.success == (PutRequest(b"a", b"1"),)
    assert t.failure == (TxnRequest(),)


def test_store_answers_convert_back_with_the_header() -> None:
    s = MVCCStore()
    s.put(b"a", b"1")
    s.put(b"a", b"2")
    h = pb.ResponseHeader(cluster_id=9, member_id=2, raft_term=4)
    r = C.range_response(s.range(b"a"), h)
    assert (r.header.cluster_id, r.header.member_id, r.header.revision, r.header.raft_term) == (
        9,
        2,
        3,
        4,
    )
    assert [(k.key, k.value, k.create_revision, k.mod_revision, k.version) for k in r.kvs] == [
        (b"a", b"2", 2, 3, 2)
    ]
    assert r.count == 1


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (
            Compacted(5),
            grpc.StatusCode.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            FutureRevision(9, 3),
            grpc.StatusCode.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision is a future revision",
        ),
    ],
)
def test_store_errors_map_to_etcds_codes_and_messages(
    exc: Exception, code: grpc.StatusCode, message: str
) -> None:
    err = X.from_store_error(exc)  # type: ignore[arg-type]
    assert (err.code, err.message) == (code, message)


def test_failures_and_member_errors_map_to_etcds_table() -> None:
    assert X.from_failure(Failure("lease_not_found", "x")) == X.LEASE_NOT_FOUND
    assert X.from_failure(Failure("duplicate_key", "x")) == X.DUPLICATE_KEY
    assert X.from_failure(Failure("too_many_ops", "x")) == X.TOO_MANY_OPS
    assert X.from_api_error(E.Unavailable("x", code="no_leader")) == X.NO_LEADER
    assert X.from_api_error(E.Unavailable("x", code="timeout")) == X.TIMEOUT
    indeterminate = X.from_api_error(E.indeterminate())
    assert indeterminate.code == grpc.StatusCode.UNAVAILABLE
    assert indeterminate.message.startswith("etcdserver: request timed out")
    assert "may still be committed" in indeterminate.message
