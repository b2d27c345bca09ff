"""etcdctl 3.5 (etcd's own client, unchanged) against three real raftkv members'
etcd ports: KV with every get option, txn from stdin, watch, leases (kept alive
through a follower), members, endpoint status and health, compaction."""

from __future__ import annotations

import json
import signal
import subprocess
from typing import Any

from cluster.harness import LocalCluster
from support.wait import wait_for

from .tools import LineReader, etcd_binary, etcdctl, etcdctl_fails


def _eps(cluster: LocalCluster) -> list[str]:
    return [m.etcd_endpoint for m in cluster.members.values()]


def _json(cluster: LocalCluster, *args: str) -> Any:
    return json.loads(etcdctl(_eps(cluster), "-w", "json", *args))


def test_put_get_with_every_option(cluster: LocalCluster) -> None:
    eps = _eps(cluster)
    for k, v in [("kv/a", "1"), ("kv/b", "2"), ("kv/c", "3")]:
        assert etcdctl(eps, "put", k, v).strip() == "OK"
    first = _json(cluster, "get", "kv/a")["kvs"][0]["mod_revision"]
    etcdctl(eps, "put", "kv/a", "1b")
    assert etcdctl(eps, "get", "kv/a", "--print-value-only").strip() == "1b"
    assert etcdctl(eps, "get", "kv/a", f"--rev={first}", "--print-value-only").strip() == "1"
    assert etcdctl(eps, "get", "kv/", "--prefix", "--keys-only").split() == [
        "kv/a",
        "kv/b",
        "kv/c",
    ]
    out = _json(cluster, "get", "kv/", "--prefix", "--limit=2")
    assert [len(out["kvs"]), out["more"], out["count"]] == [2, True, 3]
    desc = etcdctl(eps, "get", "kv/", "--prefix", "--sort-by=KEY", "--order=DESCEND", "--keys-only")
    assert desc.split() == ["kv/c", "kv/b", "kv/a"]
    by_mod = etcdctl(eps, "get", "kv/", "--prefix", "--sort-by=MODIFY", "--order=DESCEND")
    assert by_mod.split()[:2] == ["kv/a", "1b"]
    counted = etcdctl(eps, "-w", "fields", "get", "kv/", "--prefix", "--count-only")
    assert '"Count" : 3' in counted
    assert '"Key"' not in counted
    assert etcdctl(eps, "get", "kv/", "--prefix", "--consistency=s", "--keys-only").split()[0] == (
        "kv/a"
    )
    assert etcdctl(eps, "del", "kv/b").strip() == "1"
    assert etcdctl(eps, "del", "kv/", "--prefix").strip() == "2"
    assert etcdctl(eps, "get", "kv/", "--prefix") == ""


def test_header_carries_cluster_member_revision_and_term(cluster: LocalCluster) -> None:
    etcdctl(_eps(cluster), "put", "h", "x")
    h = _json(cluster, "get", "h")["header"]
    assert h["cluster_id"] > 0
    assert h["member_id"] in {1, 2, 3}
    assert h["revision"] >= 2
    assert h["raft_term"] >= 1


def test_txn_from_stdin(cluster: LocalCluster) -> None:
    eps = _eps(cluster)
    etcdctl(eps, "put", "txn/k", "old")
    script = 'value("txn/k") = "old"\n\nput txn/k new\nget txn/k\n\nput txn/k other\n\n'
    out = etcdctl(eps, "txn", stdin=script).split()
    assert out == ["SUCCESS", "OK", "txn/k", "new"]
    out = etcdctl(eps, "txn", stdin=script).split()
    assert out == ["FAILURE", "OK"]
    assert etcdctl(eps, "get", "txn/k", "--print-value-only").strip() == "other"
    # etcd's refusal of a txn writing one key twice, with its message.
    err = etcdctl_fails(eps, "txn", "--interactive=false")
    assert err  # no stdin: etcdctl's own usage error
    dup = "\nput txn/d 1\nput txn/d 2\n\n\n"
    assert "duplicate key given in txn request" in etcdctl_fails_stdin(eps, dup)


def etcdctl_fails_stdin(eps: list[str], stdin: str) -> str:
    cmd = [str(etcd_binary("etcdctl")), f"--endpoints={','.join(eps)}", "txn"]
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=20, check=False)
    assert r.returncode != 0, r.stdout
    return r.stderr


def test_watch_replays_from_a_revision_and_follows(cluster: LocalCluster) -> None:
    eps = _eps(cluster)
    etcdctl(eps, "put", "w/a", "1")
    start = _json(cluster, "get", "w/a")["kvs"][0]["mod_revision"]
    etcdctl(eps, "put", "w/b", "2")
    proc = subprocess.Popen(
        [
            str(etcd_binary("etcdctl")),
            f"--endpoints={eps[1]}",
            "watch",
            "w/",
            "--prefix",
            f"--rev={start}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = LineReader(proc)
        lines.until(["PUT", "w/a", "1", "PUT", "w/b", "2"])
        etcdctl(eps, "put", "w/c", "3")
        etcdctl(eps, "del", "w/a")
        lines.until(["PUT", "w/c", "3", "DELETE", "w/a"])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_leases_through_a_follower(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    follower = next(m for m in cluster.members.values() if m is not leader)
    eps = [follower.etcd_endpoint]
    lid = etcdctl(eps, "lease", "grant", "60").split()[1]
    etcdctl(eps, "put", "l/k", "v", f"--lease={lid}")
    ttl = etcdctl(eps, "lease", "timetolive", lid, "--keys")
    assert "granted with TTL(60s)" in ttl
    assert "attached keys([l/k])" in ttl
    assert f"lease {lid} keepalived with TTL(60)" in etcdctl(
        eps, "lease", "keep-alive", "--once", lid
    )
    assert lid in etcdctl(eps, "lease", "list")
    assert "revoked" in etcdctl(eps, "lease", "revoke", lid)
    assert etcdctl(eps, "get", "l/k") == ""
    assert "already expired" in etcdctl(eps, "lease", "timetolive", lid)
    assert "requested lease not found" in etcdctl_fails(eps, "lease", "revoke", lid)
    assert "requested lease not found" in etcdctl_fails(eps, "put", "l/x", "v", "--lease=abc")


def test_member_list_endpoint_status_and_health(cluster: LocalCluster) -> None:
    eps = _eps(cluster)
    members = _json(cluster, "member", "list")["members"]
    assert sorted(m["name"] for m in members) == ["m1", "m2", "m3"]
    by_name = {m["name"]: m for m in members}
    for m in cluster.members.values():
        assert by_name[m.name]["peerURLs"] == [m.peer_url]
        assert not by_name[m.name].get("isLearner", False)
        # A member's own etcd URL, as every member lists it (test_member_update.py
        # checks the others').
        own = json.loads(etcdctl([m.etcd_endpoint], "-w", "json", "member", "list"))
        me = next(x for x in own["members"] if x["name"] == m.name)
        assert me["clientURLs"] == [f"http://{m.etcd_endpoint}"]
    status = _json(cluster, "endpoint", "status")
    assert len(status) == 3
    leaders = {s["Status"]["leader"] for s in status}
    assert len(leaders) == 1
    for s in status:
        st = s["Status"]
        assert st["version"] == "3.5.0"
        assert st["dbSize"] > 0
        assert st["raftIndex"] >= st["raftAppliedIndex"] > 0
    health = etcdctl(eps, "endpoint", "health")
    assert health.count("is healthy") == 3
    # Members that applied the same log hash the same (at one fixed revision).
    rev = _json(cluster, "get", "x")["header"]["revision"]
    hashes = _json(cluster, "endpoint", "hashkv", f"--rev={rev}")
    assert len({h["HashKV"]["hash"] for h in hashes}) == 1
    assert all(h["HashKV"]["header"]["revision"] >= rev for h in hashes)


def test_compaction_and_its_errors(cluster: LocalCluster) -> None:
    eps = _eps(cluster)
    etcdctl(eps, "put", "c/k", "1")
    old = _json(cluster, "get", "c/k")["kvs"][0]["mod_revision"]
    etcdctl(eps, "put", "c/k", "2")
    now = _json(cluster, "get", "c/k")["header"]["revision"]
    assert f"compacted revision {now}" in etcdctl(eps, "compaction", str(now))
    err = etcdctl_fails(eps, "get", "c/k", f"--rev={old}")
    assert "etcdserver: mvcc: required revision has been compacted" in err
    err = etcdctl_fails(eps, "get", "c/k", f"--rev={now + 1000}")
    assert "etcdserver: mvcc: required revision is a future revision" in err
    assert "required revision has been compacted" in etcdctl_fails(eps, "compaction", str(old))


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _spawn(eps: list[str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(etcd_binary("etcdctl")), f"--endpoints={','.join(eps)}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_lock_is_exclusive_and_handed_over(cluster: LocalCluster) -> None:
    """etcdctl lock (clientv3's concurrency.Mutex over KV, Lease and Watch)."""
    eps = _eps(cluster)
    first = _spawn(eps, "lock", "L1")
    second: subprocess.Popen[str] | None = None
    try:
        wait_for(
            "the first holder's key",
            lambda: etcdctl(eps, "get", "L1/", "--prefix", "--keys-only").split(),
            20,
        )
        second = _spawn(eps, "lock", "L1", "echo", "second-holder")
        wait_for(
            "the second waiter's key",
            lambda: len(etcdctl(eps, "get", "L1/", "--prefix", "--keys-only").split()) == 2,
            20,
        )
        assert second.poll() is None  # still waiting: the first one holds the lock
        _stop(first)  # releases the lock (revokes its session lease)
        LineReader(second).until(["second-holder"])
        assert second.wait(timeout=20) == 0
    finally:
        _stop(first)
        if second is not None:
            _stop(second)


def test_election_campaign_and_observe(cluster: LocalCluster) -> None:
    """etcdctl elect (clientv3's concurrency.Election): a leader, an observer that
    sees it, and the next candidate taking over when the leader resigns."""
    eps = _eps(cluster)
    leader = _spawn(eps, "elect", "E1", "v1")
    observer = _spawn(eps, "elect", "-l", "E1")
    nxt: subprocess.Popen[str] | None = None
    try:
        LineReader(leader).until(["v1"])
        watch = LineReader(observer)
        watch.until(["v1"])
        nxt = _spawn(eps, "elect", "E1", "v2")
        _stop(leader)
        LineReader(nxt).until(["v2"])
        watch.until(["v1", "v2"])
    finally:
        for p in (leader, observer, nxt):
            if p is not None:
                _stop(p)
