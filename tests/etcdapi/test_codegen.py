"""The committed generated code is what grpcio-tools makes from the committed protos,
and the protos carry etcd's wire contract (names and numbers)."""

from __future__ import annotations

from pathlib import Path

from raftkv.etcdapi import codegen
from raftkv.etcdapi.proto import kv_pb2, rpc_pb2


def test_regenerating_gives_the_committed_files(tmp_path: Path) -> None:
    written = codegen.generate(tmp_path)
    assert len(written) == 2 * len(codegen.PROTOS)
    committed = codegen.NODE_ROOT / "raftkv" / "etcdapi" / "proto"
    for path in written:
        assert path.read_bytes() == (committed / path.name).read_bytes(), (
            f"{path.name} is stale: run `python -m raftkv.etcdapi.codegen`"
        )


def test_services_and_methods_are_etcds() -> None:
    services = {
        s.full_name: [m.name for m in s.methods]
        for s in rpc_pb2.DESCRIPTOR.services_by_name.values()
    }
    assert services["etcdserverpb.KV"] == ["Range", "Put", "DeleteRange", "Txn", "Compact"]
    assert services["etcdserverpb.Watch"] == ["Watch"]
    assert services["etcdserverpb.Lease"] == [
        "LeaseGrant",
        "LeaseRevoke",
        "LeaseKeepAlive",
        "LeaseTimeToLive",
        "LeaseLeases",
    ]
    assert "MemberList" in services["etcdserverpb.Cluster"]
    assert "Status" in services["etcdserverpb.Maintenance"]
    assert "AuthStatus" in services["etcdserverpb.Auth"]


def test_wire_bytes_of_known_messages() -> None:
    """Hand-encoded protobuf: field numbers and types as etcd's rpc.proto and
    kv.proto define them (a renumbered field would change these bytes)."""
    kv = kv_pb2.KeyValue(
        key=b"k", create_revision=2, mod_revision=3, version=1, value=b"v", lease=5
    )
    assert kv.SerializeToString() == b"\x0a\x01k\x10\x02\x18\x03\x20\x01\x2a\x01v\x30\x05"
    cmp = rpc_pb2.Compare(
        result=rpc_pb2.Compare.NOT_EQUAL,
        target=rpc_pb2.Compare.MOD,
        key=b"a",
        mod_revision=7,
        range_end=b"b",
    )
    # result=1 (3), target=2 (2), key=3, mod_revision=6, range_end=64 (tag 0x82 0x04)
    assert cmp.SerializeToString() == b"\x08\x03\x10\x02\x1a\x01a\x30\x07\x82\x04\x01b"
    status = rpc_pb2.StatusResponse(version="3.5.0", raftAppliedIndex=9, isLearner=True)
    assert status.SerializeToString() == b"\x12\x053.5.0\x38\x09\x50\x01"
    w = rpc_pb2.WatchCreateRequest(key=b"k", start_revision=4, prev_kv=True, watch_id=2)
    assert w.SerializeToString() == b"\x0a\x01k\x18\x04\x30\x01\x38\x02"
