"""etcd's server-side lock and election services (v3lockpb, v3electionpb) over
raftkv: mutual exclusion in create-revision order, leader, proclaim, observe,
resign, and a holder's lease ending hands the lock over."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from cluster.harness import LocalCluster
from raftkv.etcdapi.proto import rpc_pb2 as pb
from raftkv.etcdapi.proto import v3election_pb2 as el
from raftkv.etcdapi.proto import v3lock_pb2 as lk
from support.wait import wait_for

from .stubs import EtcdStub


@pytest.fixture
def stubs(cluster: LocalCluster) -> Iterator[list[EtcdStub]]:
    out = [EtcdStub(m.etcd_endpoint) for m in cluster.members.values()]
    try:
        yield out
    finally:
        for s in out:
            s.close()


def _lease(stub: EtcdStub, ttl: int = 30) -> int:
    return int(stub.call("Lease", "LeaseGrant", pb.LeaseGrantRequest(TTL=ttl)).ID)


def _keys(stub: EtcdStub, prefix: bytes) -> list[bytes]:
    r = stub.call("KV", "Range", pb.RangeRequest(key=prefix, range_end=prefix[:-1] + b"0"))
    return [kv.key for kv in r.kvs]


def test_lock_waits_for_the_holder_then_hands_over(stubs: list[EtcdStub]) -> None:
    a, b = stubs[0], stubs[1]
    la, lb = _lease(a), _lease(b)
    held = a.call("Lock", "Lock", lk.LockRequest(name=b"mx", lease=la))
    assert held.key == b"mx/%x" % la
    with ThreadPoolExecutor(1) as pool:
        waiting: Future[Any] = pool.submit(
            b.call, "Lock", "Lock", lk.LockRequest(name=b"mx", lease=lb), 30
        )
        wait_for("the waiter's key", lambda: len(_keys(a, b"mx/")) == 2, 20)
        assert not waiting.done()  # the holder still holds it
        a.call("Lock", "Unlock", lk.UnlockRequest(key=held.key))
        assert waiting.result(timeout=30).key == b"mx/%x" % lb
    b.call("Lock", "Unlock", lk.UnlockRequest(key=b"mx/%x" % lb))
    assert _keys(a, b"mx/") == []


def test_a_revoked_holder_releases_the_lock(stubs: list[EtcdStub]) -> None:
    a, b = stubs[0], stubs[2]
    la, lb = _lease(a), _lease(b)
    a.call("Lock", "Lock", lk.LockRequest(name=b"rv", lease=la))
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(b.call, "Lock", "Lock", lk.LockRequest(name=b"rv", lease=lb), 30)
        wait_for("the waiter's key", lambda: len(_keys(a, b"rv/")) == 2, 20)
        a.call("Lease", "LeaseRevoke", pb.LeaseRevokeRequest(ID=la))
        assert waiting.result(timeout=30).key == b"rv/%x" % lb
    err = None
    try:
        a.call("Lock", "Lock", lk.LockRequest(name=b"rv", lease=la))
    except grpc.RpcError as exc:
        err = exc
    assert err is not None
    assert err.details() == "etcdserver: requested lease not found"


def test_election_campaign_proclaim_observe_resign(stubs: list[EtcdStub]) -> None:
    a, b, c = stubs
    la, lb = _lease(a), _lease(b)
    won = a.call("Election", "Campaign", el.CampaignRequest(name=b"el", lease=la, value=b"v1"))
    ld = won.leader
    assert (ld.name, ld.key, ld.lease) == (b"el", b"el/%x" % la, la)
    assert c.call("Election", "Leader", el.LeaderRequest(name=b"el")).kv.value == b"v1"
    seen: list[bytes] = []
    got_two = threading.Event()
    stream = c.server_stream("Election", "Observe", el.LeaderRequest(name=b"el"), timeout=30)

    def observe() -> None:
        try:
            for resp in stream:
                seen.append(resp.kv.value)
                if len(seen) == 3:
                    got_two.set()
                    return
        except grpc.RpcError:
            pass

    t = threading.Thread(target=observe, daemon=True)
    t.start()
    try:
        wait_for("the observer's first leader", lambda: seen == [b"v1"], 20)
        a.call("Election", "Proclaim", el.ProclaimRequest(leader=ld, value=b"v1b"))
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(
                b.call,
                "Election",
                "Campaign",
                el.CampaignRequest(name=b"el", lease=lb, value=b"v2"),
                30,
            )
            wait_for("the second candidate's key", lambda: len(_keys(a, b"el/")) == 2, 20)
            a.call("Election", "Resign", el.ResignRequest(leader=ld))
            assert second.result(timeout=30).leader.key == b"el/%x" % lb
        assert got_two.wait(30)
        assert seen == [b"v1", b"v1b", b"v2"]
        err = None
        try:
            a.call("Election", "Proclaim", el.ProclaimRequest(leader=ld, value=b"late"))
        except grpc.RpcError as exc:
            err = exc
        assert err is not None
        assert err.details() == "election: not leader"
    finally:
        stream.cancel()
        t.join(timeout=10)
