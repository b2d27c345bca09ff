"""etcdctl `member update` against raftkv: a member's peer URL changed through Raft
(refusals as etcd words them), every member listing the new URL, and the member
restarted on it rejoining the quorum there; on a cluster of its own."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from cluster.harness import LocalCluster
from raftkv.etcdapi.proto import rpc_pb2 as pb
from support.members import free_port
from support.wait import wait_for

from .stubs import EtcdStub
from .tools import etcdctl, etcdctl_fails, live_endpoints


def _members(endpoint: str) -> dict[str, Any]:
    out = json.loads(etcdctl([endpoint], "-w", "json", "member", "list"))
    return {m["name"]: m for m in out["members"]}


def test_member_update_moves_a_peer_url(fresh: LocalCluster) -> None:
    leader = fresh.leader()
    target, via = (m for m in fresh.members.values() if m is not leader)
    hex_id = f"{_members(via.etcd_endpoint)[target.name]['ID']:x}"
    new_url = f"http://127.0.0.1:{free_port()}"
    eps = live_endpoints(fresh)

    # refusals, with etcd's messages
    err = etcdctl_fails(eps, "member", "update", "ffff", f"--peer-urls={new_url}")
    assert "member not found" in err
    stub = EtcdStub(via.etcd_endpoint)  # etcdctl checks URLs itself; the server does too
    try:
        req = pb.MemberUpdateRequest(ID=int(hex_id, 16), peerURLs=["ftp://x"])
        with pytest.raises(grpc.RpcError) as bad:
            stub.call("Cluster", "MemberUpdate", req)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad.value.details() == "etcdserver: given member URLs are invalid"
    finally:
        stub.close()
    err = etcdctl_fails(eps, "member", "update", hex_id, f"--peer-urls={leader.peer_url}")
    assert "Peer URLs already exists" in err

    # through a follower that is not the one moved
    out = etcdctl([via.etcd_endpoint], "member", "update", hex_id, f"--peer-urls={new_url}")
    assert "updated in cluster" in out
    # (the moved member itself is cut off until it listens there, as with etcd)
    for m in (leader, via):
        got = _members(m.etcd_endpoint)[target.name]
        assert got["peerURLs"] == [new_url]
        assert got["clientURLs"]  # the rest of its attributes are kept
    with via.http() as h:
        native = {m["name"]: m for m in h.get("/v1/members").json()["members"]}
    assert native[target.name]["peer_urls"] == [new_url]

    # the member moves there, and the others reach it there
    fresh.stop(target.name)
    target.peer_port = int(new_url.rsplit(":", 1)[1])
    target.args = []
    fresh.start(target.name)
    fresh.wait_ready([target.name])
    etcdctl(live_endpoints(fresh), "put", "moved", "yes")

    def replicated() -> bool:
        got = etcdctl(
            [target.etcd_endpoint], "get", "moved", "--consistency=s", "--print-value-only"
        )
        return got.strip() == "yes"

    wait_for("the moved member replicates", replicated, 20)
    assert _members(target.etcd_endpoint)[target.name]["peerURLs"] == [new_url]
    # it counts towards the quorum at its new URL: with the third member down,
    # the leader and it still commit
    fresh.stop(via.name)
    assert etcdctl([leader.etcd_endpoint], "put", "quorum", "ok").strip() == "OK"


def test_member_list_reports_every_members_own_etcd_url(fresh: LocalCluster) -> None:
    """Members publish their advertised etcd URL in the member registry, so every
    member lists the others' real etcd endpoints (here on ports that are not the
    client port + 10000), and clients that discover endpoints from MemberList
    (etcdctl --cluster, clientv3's auto-sync) reach them all."""
    want = {m.name: [f"http://{m.etcd_endpoint}"] for m in fresh.members.values()}
    assert all(m.etcd_port != m.client_port + 10000 for m in fresh.members.values())
    for m in fresh.members.values():

        def listed(endpoint: str = m.etcd_endpoint) -> bool:
            got = _members(endpoint)
            return {name: x.get("clientURLs") for name, x in got.items()} == want

        wait_for(f"{m.name} lists every member's etcd URL", listed, 20)
    one = next(iter(fresh.members.values()))
    out = json.loads(etcdctl([one.etcd_endpoint], "endpoint", "status", "--cluster", "-w", "json"))
    assert sorted(s["Endpoint"] for s in out) == sorted(u for urls in want.values() for u in urls)
    # kept in the registry across a restart (snapshot and log)
    fresh.stop("m2")
    fresh.start("m2")
    fresh.wait_ready(["m2"])
    got = _members(fresh.members["m2"].etcd_endpoint)
    assert {name: x.get("clientURLs") for name, x in got.items()} == want
