"""etcd3gw (PyPI's client of etcd's JSON gateway) runs unchanged against a raftkv
member's client port: KV, txn, leases, a streamed watch, members and status, through
a follower."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cluster.harness import LocalCluster

etcd3gw = pytest.importorskip("etcd3gw", reason="etcd3gw is in the dev extra")


def _client(cluster: LocalCluster) -> Any:
    leader = cluster.leader()
    follower = next(m for m in cluster.members.values() if m is not leader)
    return etcd3gw.client(host="127.0.0.1", port=follower.client_port, timeout=10)


def test_kv_txn_and_leases(cluster: LocalCluster) -> None:
    c = _client(cluster)
    assert c.put("gw/a", "1")
    assert c.get("gw/a") == [b"1"]
    assert c.create("gw/b", "x")
    assert not c.create("gw/b", "y")  # exists: etcd3gw's create is a txn on version 0
    assert c.replace("gw/b", "x", "z")
    assert not c.replace("gw/b", "x", "w")
    assert [kv for kv, _ in c.get_prefix("gw/")] == [b"1", b"z"]
    lease = c.lease(ttl=30)
    assert c.put("gw/leased", "v", lease=lease)
    assert 0 < lease.ttl() <= 30
    assert lease.keys() == [b"gw/leased"]
    assert lease.refresh() > 0
    assert lease.revoke()
    assert c.get("gw/leased") == []
    assert c.delete("gw/a")
    assert c.get("gw/a") == []
    assert c.status()["header"]["cluster_id"]
    assert len(c.members()) == 3


def test_streamed_watch(cluster: LocalCluster) -> None:
    c = _client(cluster)
    events, cancel = c.watch_prefix("gw/w/")
    seen: list[tuple[str, bytes]] = []
    done = threading.Event()

    def read() -> None:
        for ev in events:
            seen.append((ev.get("type", "PUT"), ev["kv"]["key"]))
            if len(seen) == 3:
                break
        done.set()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        c.put("gw/w/1", "a")
        c.put("gw/w/2", "b")
        c.delete("gw/w/1")
        assert done.wait(20), seen
    finally:
        cancel()
        t.join(10)
    assert seen == [("PUT", b"gw/w/1"), ("PUT", b"gw/w/2"), ("DELETE", b"gw/w/1")]
