"""etcd's gRPC API directly (no etcdctl): limits, refusals and the calls raftkv does
not serve, with etcd's codes and messages."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from cluster.harness import LocalCluster
from raftkv.etcdapi.proto import rpc_pb2 as pb
from support.wait import wait_for

from .stubs import EtcdStub


@pytest.fixture
def stub(cluster: LocalCluster) -> Iterator[EtcdStub]:
    s = EtcdStub(next(iter(cluster.members.values())).etcd_endpoint)
    try:
        yield s
    finally:
        s.close()


def _fails(stub: EtcdStub, service: str, method: str, req: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        stub.call(service, method, req)  # type: ignore[arg-type]
    return e.value


def test_kubernetes_sized_values_pass_and_larger_requests_are_refused(stub: EtcdStub) -> None:
    big = b"x" * ((3 << 19) - 1024)  # 1.5 MiB with room for the key: what Kubernetes stores
    put = stub.call("KV", "Put", pb.PutRequest(key=b"big", value=big))
    got = stub.call("KV", "Range", pb.RangeRequest(key=b"big"))
    assert got.kvs[0].value == big
    assert got.kvs[0].mod_revision == put.header.revision
    err = _fails(stub, "KV", "Put", pb.PutRequest(key=b"big", value=big + b"x" * 4096))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "etcdserver: request is too large"
    stub.call("KV", "DeleteRange", pb.DeleteRangeRequest(key=b"big"))


def test_txn_limits_and_bad_requests(stub: EtcdStub) -> None:
    ops = [pb.RequestOp(request_put=pb.PutRequest(key=b"t%d" % i)) for i in range(129)]
    err = _fails(stub, "KV", "Txn", pb.TxnRequest(success=ops))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: too many operations in txn request",
    )
    err = _fails(stub, "KV", "Range", pb.RangeRequest())
    assert (err.code(), err.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "etcdserver: key is not provided",
    )
    err = _fails(stub, "KV", "Put", pb.PutRequest(key=b"k", lease=424242))
    assert (err.code(), err.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "etcdserver: requested lease not found",
    )
    err = _fails(stub, "KV", "Put", pb.PutRequest(key=b"nokey", ignore_value=True))
    assert err.details() == "etcdserver: key not found"


def test_auth_is_off_and_the_rest_is_unimplemented(stub: EtcdStub) -> None:
    st = stub.call("Auth", "AuthStatus", pb.AuthStatusRequest())
    assert st.enabled is False
    assert st.header.member_id > 0
    err = _fails(stub, "Auth", "UserAdd", pb.AuthUserAddRequest(name="u"))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Auth.UserAdd is not implemented" in str(err.details())
    # Downgrade is answered (as by a cluster that cannot downgrade; test_downgrade.py)
    err = _fails(stub, "Maintenance", "Downgrade", pb.DowngradeRequest())
    assert err.details() == "etcdserver: wrong downgrade target version format"


def test_members_that_applied_the_same_log_hash_the_same(cluster: LocalCluster) -> None:
    stubs = [EtcdStub(m.etcd_endpoint) for m in cluster.members.values()]
    try:
        stubs[0].call("KV", "Put", pb.PutRequest(key=b"hashed", value=b"v"))

        def same() -> bool:
            answers = [s.call("Maintenance", "Hash", pb.HashRequest()) for s in stubs]
            return len({a.hash for a in answers}) == 1 and answers[0].hash != 0

        wait_for("equal hashes on every member", same, 20)
    finally:
        for s in stubs:
            s.close()


def test_require_leader_metadata_is_accepted_with_a_leader(stub: EtcdStub) -> None:
    fn: grpc.UnaryUnaryMultiCallable[pb.RangeRequest, pb.RangeResponse] = stub.channel.unary_unary(
        "/etcdserverpb.KV/Range",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.RangeResponse.FromString,
    )
    resp = fn(pb.RangeRequest(key=b"k"), metadata=(("hasleader", "true"),), timeout=10)
    assert resp.header.revision >= 1


def test_keepalive_stream_renews_and_reports_unknown_leases(
    cluster: LocalCluster, stub: EtcdStub
) -> None:
    lease = stub.call("Lease", "LeaseGrant", pb.LeaseGrantRequest(TTL=20))
    reqs = iter([pb.LeaseKeepAliveRequest(ID=lease.ID), pb.LeaseKeepAliveRequest(ID=77)])
    answers = list(stub.stream("Lease", "LeaseKeepAlive", reqs))
    assert [(a.ID, a.TTL) for a in answers] == [(lease.ID, 20), (77, 0)]
    leases = stub.call("Lease", "LeaseLeases", pb.LeaseLeasesRequest())
    assert lease.ID in [x.ID for x in leases.leases]
    stub.call("Lease", "LeaseRevoke", pb.LeaseRevokeRequest(ID=lease.ID))
    ttl = stub.call("Lease", "LeaseTimeToLive", pb.LeaseTimeToLiveRequest(ID=lease.ID))
    assert ttl.TTL == -1
