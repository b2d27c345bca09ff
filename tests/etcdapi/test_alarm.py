"""The space quota and etcd's NOSPACE alarm on three real members, driven by etcdctl
3.5 as an operator would: writes until one is refused with etcd's error, the alarm
listed by every member (it went through Raft), the native API refusing too (507),
what still works under the alarm, the way out (delete, compact, defrag, disarm), and
the alarm kept across a restart and carried by a snapshot to a member that was
away."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cluster.harness import LocalCluster, Member
from raftkv.client import Client, NoSpace
from support.wait import wait_for

from .tools import etcd_binary, etcdctl, etcdctl_fails, live_endpoints

QUOTA = 48 * 1024
VALUE = "x" * 2048
NOSPACE = "etcdserver: mvcc: database space exceeded"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(
        tmp_path_factory.mktemp("quota"),
        3,
        etcd=True,
        snapshot_count=20,
        extra_args=["--quota-backend-bytes", str(QUOTA)],
    ) as c:
        yield c


def _alarms(m: Member) -> list[str]:
    return etcdctl([m.etcd_endpoint], "alarm", "list").split("\n")[:-1]


def _status(m: Member) -> dict[str, Any]:
    out: list[dict[str, Any]] = json.loads(
        etcdctl([m.etcd_endpoint], "endpoint", "status", "-w", "json")
    )
    status: dict[str, Any] = out[0]["Status"]
    return status


def _fill(cluster: LocalCluster, prefix: str) -> int:
    """Put 2 KiB values through etcdctl until one is refused; how many went in."""
    cmd = [str(etcd_binary("etcdctl")), f"--endpoints={','.join(live_endpoints(cluster))}"]
    for i in range(100):
        r = subprocess.run(
            [*cmd, "put", f"{prefix}/{i:03d}", VALUE],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        if r.returncode != 0:
            assert NOSPACE in r.stderr, r.stderr
            return i
    raise AssertionError(f"no write was refused under a quota of {QUOTA} bytes")


def test_nospace_alarm_refuses_writes_until_disarmed(cluster: LocalCluster) -> None:
    eps = live_endpoints(cluster)
    m1 = cluster.members["m1"]
    retried = {"X-Request-Id": "before-the-alarm"}
    with m1.http() as h:
        assert h.put("/v1/kv/retried", content=b"v", headers=retried).status_code == 200
    written = _fill(cluster, "fill")
    assert 5 < written < QUOTA // len(VALUE) + 1

    # raised through Raft: every member lists it, and shows it in Status.errors
    alarms = {tuple(_alarms(m)) for m in cluster.members.values()}
    assert len(alarms) == 1
    listed = list(next(iter(alarms)))
    assert len(listed) == 1
    assert re.fullmatch(r"memberID:\d+ alarm:NOSPACE ?", listed[0])
    for m in cluster.members.values():
        errors = _status(m).get("errors", [])
        assert any("alarm:NOSPACE" in e for e in errors), errors

    # etcdctl's health check lists alarms and reports them, as against etcd
    assert "alarm" in etcdctl_fails(eps, "endpoint", "health").lower()

    # refused everywhere, whatever the size: puts, txns that put, lease grants
    for m in cluster.members.values():
        assert NOSPACE in etcdctl_fails([m.etcd_endpoint], "put", "small", "v")
    assert NOSPACE in etcdctl_fails(eps, "lease", "grant", "60")
    txn = 'version("fill/000") > "0"\n\nput t1 v\n\nput t2 v\n\n'
    with pytest.raises(AssertionError, match=NOSPACE):
        etcdctl(eps, "txn", stdin=txn)
    # the native API refuses too, with 507 and a code of its own
    with m1.http() as h:
        # a retry of a write that did commit still learns its fate (the refusal is
        # the state machine's, after its request-id check)
        again = h.put("/v1/kv/retried", content=b"v", headers=retried)
        assert again.status_code == 200
        assert again.json()["replayed"] is True
        r = h.put("/v1/kv/native", content=b"v")
        assert r.status_code == 507
        assert r.json()["error"] == "no_space"
        assert NOSPACE in r.json()["message"]
        assert h.post("/v1/leases", json={"ttl": 30}).status_code == 507
        # gateway: grpc-gateway's status for RESOURCE_EXHAUSTED
        g = h.post("/v3/kv/put", json={"key": "Zw==", "value": "dg=="})
        assert g.status_code == 429
        assert g.json()["message"] == NOSPACE
        # and the metric
        metrics = h.get("/metrics").text
    with Client([m1.url]) as cl, pytest.raises(NoSpace):  # the Python client's error
        cl.put("native", b"v")
    assert re.search(r'raftkv_alarm_active\{alarm="NOSPACE",member_id="\d+"\} 1\.0', metrics)
    assert f"raftkv_quota_backend_bytes {float(QUOTA)}" in metrics

    # what makes room still works: reads, deletes, compaction, defrag
    assert etcdctl(eps, "get", "fill/000", "--print-value-only").strip() == VALUE
    assert etcdctl(eps, "del", "fill/", "--prefix").strip() == str(written)
    rev = json.loads(etcdctl(eps, "get", "fill/", "-w", "json"))["header"]["revision"]
    etcdctl(eps, "compaction", str(rev), "--physical")
    etcdctl(eps, "defrag")
    assert _alarms(m1) == listed
    assert NOSPACE in etcdctl_fails(eps, "put", "small", "v")

    # disarmed: listed nowhere, and writes work again
    assert etcdctl(eps, "alarm", "disarm").split("\n")[:-1] == listed
    for m in cluster.members.values():
        assert _alarms(m) == []
        assert not _status(m).get("errors")
    assert etcdctl(eps, "put", "small", "v").strip() == "OK"
    with m1.http() as h:
        assert h.put("/v1/kv/native", content=b"v").status_code == 200
    etcdctl(eps, "del", "small", "retried")
    with m1.http() as h:
        h.delete("/v1/kv/native")


def test_the_alarm_survives_a_restart_and_travels_in_a_snapshot(cluster: LocalCluster) -> None:
    written = _fill(cluster, "again")
    listed = _alarms(cluster.members["m1"])
    assert len(listed) == 1

    # m3 is away while the log moves on far enough for the leader to snapshot
    # and drop what m3 would need: it comes back through a snapshot that holds the alarm
    leader = cluster.leader()
    away = next(m for m in cluster.members.values() if m.name != leader.name)
    cluster.stop(away.name)
    eps = live_endpoints(cluster)
    for i in range(written):
        etcdctl(eps, "del", f"again/{i:03d}")
    for i in range(30):  # deletes of nothing still take log entries
        etcdctl(eps, "del", f"nothing/{i}")
    cluster.start(away.name)
    cluster.wait_ready()
    wait_for("the member caught up through a snapshot", lambda: _received(away) >= 1, 30)
    assert _alarms(away) == listed
    assert any("alarm:NOSPACE" in e for e in _status(away).get("errors", []))
    assert NOSPACE in etcdctl_fails([away.etcd_endpoint], "put", "k", "v")

    # a restart of every member keeps it (snapshots and logs)
    for m in cluster.members.values():
        cluster.stop(m.name)
    for m in cluster.members.values():
        cluster.start(m.name)
    cluster.wait_ready()
    cluster.leader()
    for m in cluster.members.values():
        assert _alarms(m) == listed
    eps = live_endpoints(cluster)
    assert NOSPACE in etcdctl_fails(eps, "put", "k", "v")
    rev = json.loads(etcdctl(eps, "get", "again/", "-w", "json"))["header"]["revision"]
    etcdctl(eps, "compaction", str(rev), "--physical")  # the deleted values' history
    etcdctl(eps, "defrag")
    etcdctl(eps, "alarm", "disarm")
    assert etcdctl(eps, "put", "k", "v").strip() == "OK"


def _received(m: Member) -> float:
    try:
        text = httpx.get(m.url + "/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    found = re.search(r"^raftkv_snapshots_received_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0
