"""etcd's JSON gateway on the HTTP client port, as etcd 3.4+ serves it: proto3 JSON
in (base64 bytes, int64 as strings or numbers), etcd's shapes out (original field
names, int64 as strings), grpc-gateway's errors."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from cluster.harness import LocalCluster


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def post(cluster: LocalCluster, path: str, body: dict[str, Any], status: int = 200) -> Any:
    member = next(iter(cluster.members.values()))
    r = httpx.post(member.url + path, json=body, timeout=10)
    assert r.status_code == status, r.text
    return r.json()


def test_kv_calls(cluster: LocalCluster) -> None:
    put = post(cluster, "/v3/kv/put", {"key": b64("gw/a"), "value": b64("1")})
    rev = int(put["header"]["revision"])
    assert isinstance(put["header"]["revision"], str)
    post(cluster, "/v3/kv/put", {"key": b64("gw/b"), "value": b64("2"), "prev_kv": True})
    got = post(cluster, "/v3/kv/range", {"key": b64("gw/"), "range_end": b64("gw0")})
    assert [base64.b64decode(kv["value"]) for kv in got["kvs"]] == [b"1", b"2"]
    assert got["count"] == "2"
    assert got["kvs"][0]["mod_revision"] == str(rev)
    # camelCase names and numbers for int64 are accepted too (proto3 JSON)
    lim = post(cluster, "/v3/kv/range", {"key": b64("gw/"), "rangeEnd": b64("gw0"), "limit": 1})
    assert lim["more"] is True
    txn = post(
        cluster,
        "/v3/kv/txn",
        {
            "compare": [
                {"key": b64("gw/a"), "target": "VALUE", "result": "EQUAL", "value": b64("1")}
            ],
            "success": [{"request_put": {"key": b64("gw/a"), "value": b64("x")}}],
        },
    )
    assert txn["succeeded"] is True
    deleted = post(cluster, "/v3/kv/deleterange", {"key": b64("gw/"), "range_end": b64("gw0")})
    assert deleted["deleted"] == "2"
    now = int(deleted["header"]["revision"])
    post(cluster, "/v3/kv/compaction", {"revision": str(now)})
    err = post(cluster, "/v3/kv/range", {"key": b64("gw/a"), "revision": rev}, status=400)
    assert err["message"] == "etcdserver: mvcc: required revision has been compacted"
    assert err["code"] == 11  # OUT_OF_RANGE


def test_leases_members_status(cluster: LocalCluster) -> None:
    g = post(cluster, "/v3/lease/grant", {"TTL": "30"})
    lid = g["ID"]
    assert g["TTL"] == "30"
    ka = post(cluster, "/v3/lease/keepalive", {"ID": lid})
    assert ka["result"]["TTL"] == "30"
    ttl = post(cluster, "/v3/lease/timetolive", {"ID": lid, "keys": True})
    assert ttl["grantedTTL"] == "30"
    post(cluster, "/v3/lease/revoke", {"ID": lid})
    gone = post(cluster, "/v3/lease/revoke", {"ID": lid}, status=404)
    assert gone["error"] == "etcdserver: requested lease not found"
    members = post(cluster, "/v3/cluster/member/list", {})
    assert len(members["members"]) == 3
    status = post(cluster, "/v3/maintenance/status", {})
    assert status["version"] == "3.5.0"
    lid2 = post(cluster, "/v3/lease/grant", {"TTL": 30})["ID"]
    locked = post(cluster, "/v3/lock/lock", {"name": b64("gwlock"), "lease": lid2})
    assert base64.b64decode(locked["key"]).startswith(b"gwlock/")
    post(cluster, "/v3/lock/unlock", {"key": locked["key"]})
    won = post(
        cluster, "/v3/election/campaign", {"name": b64("gwel"), "lease": lid2, "value": b64("a")}
    )
    leader = post(cluster, "/v3/election/leader", {"name": b64("gwel")})
    assert base64.b64decode(leader["kv"]["value"]) == b"a"
    post(cluster, "/v3/election/resign", {"leader": won["leader"]})
    none = post(cluster, "/v3/election/leader", {"name": b64("gwel")}, status=500)
    assert none["message"] == "election: no leader"
    bad = post(cluster, "/v3/kv/range", {"key": 5}, status=400)
    assert bad["code"] == 3  # INVALID_ARGUMENT


def test_health_and_version_as_etcd_answers_them(cluster: LocalCluster) -> None:
    member = next(iter(cluster.members.values()))
    assert httpx.get(member.url + "/health", timeout=10).json() == {
        "health": "true",
        "reason": "",
    }
    assert httpx.get(member.url + "/version", timeout=10).json() == {
        "etcdserver": "3.5.0",
        "etcdcluster": "3.5.0",
    }
