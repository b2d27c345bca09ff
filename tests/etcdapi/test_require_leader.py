"""clientv3's `hasleader` metadata: a member cut off from its leader refuses new calls
with "no leader" and ends the watches that asked for a leader, so their clients
re-watch through a member that has one (Kubernetes' apiserver watches this way)."""

from __future__ import annotations

import grpc
import pytest

from cluster.harness import LocalCluster
from raftkv.etcdapi.proto import rpc_pb2 as pb
from support.wait import wait_for

from .stubs import EtcdStub


def test_a_member_without_leader_ends_leader_requiring_watches(fresh: LocalCluster) -> None:
    leader = fresh.leader()
    lone = next(m for m in fresh.members.values() if m is not leader)
    others = [m.name for m in fresh.members.values() if m is not lone]
    stub = EtcdStub(lone.etcd_endpoint)
    watch: grpc.StreamStreamMultiCallable[pb.WatchRequest, pb.WatchResponse]
    watch = stub.channel.stream_stream(
        "/etcdserverpb.Watch/Watch",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=pb.WatchResponse.FromString,
    )
    create = pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"rl"))
    responses = watch(iter([create]), metadata=(("hasleader", "true"),), timeout=60)
    try:
        assert next(responses).created
        for name in others:
            fresh.pause(name)
        with pytest.raises(grpc.RpcError) as e:
            for _ in responses:
                pass
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert e.value.details() == "etcdserver: no leader"
        range_: grpc.UnaryUnaryMultiCallable[pb.RangeRequest, pb.RangeResponse]
        range_ = stub.channel.unary_unary(
            "/etcdserverpb.KV/Range",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.RangeResponse.FromString,
        )

        def refused() -> bool:
            try:
                range_(
                    pb.RangeRequest(key=b"rl", serializable=True),
                    metadata=(("hasleader", "true"),),
                    timeout=5,
                )
            except grpc.RpcError as exc:
                return exc.details() == "etcdserver: no leader"
            return False

        wait_for("a leader-requiring read refused", refused, 20)
        # Without the metadata a serializable read is still served from local state.
        got = stub.call("KV", "Range", pb.RangeRequest(key=b"rl", serializable=True))
        assert got.count == 0
    finally:
        for name in others:
            fresh.resume(name)
        stub.close()
