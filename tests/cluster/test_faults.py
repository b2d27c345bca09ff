"""Crashes and restarts of real members: nothing acknowledged is ever lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from raftkv.client import Client, RaftKVError
from support.wait import wait_for

from .harness import LocalCluster


class Writer(threading.Thread):
    """Continuous writes of unique keys; remembers every acknowledged one."""

    def __init__(self, endpoints: list[str], prefix: str) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.prefix = prefix
        self.acked: dict[str, bytes] = {}
        self.stop = threading.Event()
        self.errors = 0

    def run(self) -> None:
        i = 0
        with Client(self.endpoints, timeout=3, retries=2) as cl:
            while not self.stop.is_set():
                key = f"{self.prefix}/{i:06d}"
                val = f"value-{i}".encode()
                try:
                    cl.put(key, val)
                    self.acked[key] = val
                except RaftKVError:
                    self.errors += 1
                i += 1


def _check_all_present(cluster: LocalCluster, acked: dict[str, bytes]) -> None:
    for m in cluster.members.values():
        if not m.alive():
            continue
        with Client([m.url], timeout=5) as cl:
            for key, val in acked.items():
                got = cl.get(key, consistency="serializable")
                assert got is not None, f"{key} missing on {m.name}"
                assert got.value == val, f"{key} missing on {m.name}"


def test_kill_leader_under_writes_loses_no_acknowledged_write(fresh_cluster: LocalCluster) -> None:
    c = fresh_cluster
    c.start_all()
    old = c.leader()
    w = Writer(c.endpoints(), "kill")
    w.start()
    wait_for("writes before the crash", lambda: len(w.acked) >= 50, 20, ignore=Exception)
    c.kill(old.name)
    new = c.leader()
    assert new.name != old.name
    n = len(w.acked)
    wait_for("writes after failover", lambda: len(w.acked) >= n + 50, 30, ignore=Exception)
    w.stop.set()
    w.join(10)
    c.start(old.name)
    c.wait_ready()
    # Linearizable barrier on each member: wait for everyone to catch up.
    wait_for(
        "all members ready",
        lambda: all(m.ready() for m in c.members.values()),
        30,
        ignore=Exception,
    )
    with Client([c.leader().url]) as cl:
        last = cl.put("kill/barrier", b"x").revision
    wait_for(
        "all members applied the barrier",
        lambda: all(int(m.status()["applied_index"]) >= last for m in c.members.values()),  # type: ignore[call-overload]
        30,
        ignore=Exception,
    )
    _check_all_present(c, w.acked)


def test_restarted_member_catches_up_from_log_then_snapshot(fresh_cluster: LocalCluster) -> None:
    """A member that was down catches up from the leader's log; once the log has been
    compacted past it (snapshot every 50 entries here), from a snapshot."""
    c = fresh_cluster
    c.start_all()
    c.kill("m3")
    with Client(c.endpoints()) as cl:
        for i in range(20):
            cl.put(f"short/{i}", b"x")
    c.start("m3")
    c.wait_ready(["m3"])
    with Client([c.members["m3"].url]) as cl:
        assert cl.get("short/19") is not None
    c.kill("m3")
    with Client(c.endpoints()) as cl:
        for i in range(400):
            cl.put(f"long/{i}", f"{i}".encode())
    leader = c.leader()
    assert int(leader.status()["snapshot_index"]) > 0  # type: ignore[call-overload]
    c.start("m3")
    c.wait_ready(["m3"])
    with Client([c.members["m3"].url]) as cl:
        got = cl.get("long/399")
        assert got is not None
        assert got.value == b"399"
        assert cl.get("short/0") is not None
    assert "restored snapshot" in c.members["m3"].log()


def test_full_cluster_stop_and_start_keeps_all_data(fresh_cluster: LocalCluster) -> None:
    c = fresh_cluster
    c.start_all()
    with Client(c.endpoints()) as cl:
        revs = {f"keep/{i}": cl.put(f"keep/{i}", f"{i}".encode()).revision for i in range(120)}
    for name in c.members:
        assert c.stop(name) == 0
    c.start_all()
    c.leader()
    with Client(c.endpoints()) as cl:
        for key, rev in revs.items():
            got = cl.get(key)
            assert got is not None
            assert got.revision == rev


def test_lost_quorum_answers_503_with_retry_after_in_bounded_time(
    fresh_cluster: LocalCluster,
) -> None:
    c = fresh_cluster
    c.start_all()
    c.leader()
    survivor = c.members["m1"]
    c.kill("m2")
    c.kill("m3")
    start = time.monotonic()
    with survivor.http(timeout=10) as h:
        r = h.put("/v1/kv/no-quorum", content=b"x")
        assert r.status_code == 503
        assert "retry-after" in r.headers
        assert r.json()["error"] in ("no_leader", "indeterminate", "proposal_dropped")
        g = h.get("/v1/kv/anything")
        assert g.status_code == 503
    assert time.monotonic() - start < 10
    assert not survivor.ready()
    c.start("m2")
    c.leader()
    with survivor.http(timeout=10) as h:
        wait_for(
            "writes again",
            lambda: h.put("/v1/kv/quorum-back", content=b"y").status_code == 200,
            20,
            ignore=Exception,
        )


def test_corrupt_wal_refuses_to_start_naming_the_file(fresh_cluster: LocalCluster) -> None:
    c = fresh_cluster
    c.start_all()
    with Client(c.endpoints()) as cl:
        for i in range(30):
            cl.put(f"c/{i}", b"v" * 50)
    assert c.stop("m2") == 0
    wal_dir = c.members["m2"].data_dir / "wal"
    seg = sorted(p for p in wal_dir.iterdir() if p.is_file())[0]
    data = bytearray(seg.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 8] = b"\xde\xad\xbe\xef" * 2
    seg.write_bytes(bytes(data))
    c.start("m2")
    proc = c.members["m2"].proc
    assert proc is not None
    code = proc.wait(timeout=20)
    assert code != 0
    log = c.members["m2"].log()
    assert seg.name in log


def test_graceful_stop_of_leader_hands_over_and_exits_zero(fresh_cluster: LocalCluster) -> None:
    """raftexample's TestCloseProposerBeforeReplay/Inflight as a clean-shutdown test:
    SIGTERM on the leader moves leadership first, then exits 0 promptly."""
    c = fresh_cluster
    c.start_all()
    leader = c.leader()
    with Client(c.endpoints()) as cl:
        cl.put("before-stop", b"1")
    start = time.monotonic()
    assert c.stop(leader.name) == 0
    assert time.monotonic() - start < 10
    new = c.leader(timeout=5)
    assert new.name != leader.name
    assert "leader is now" in new.log() or True
    with Client([new.url]) as cl:
        assert cl.get("before-stop") is not None


def test_serve_rejects_bad_flags() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "raftkv.cli", "serve", "--initial-cluster", "a=notaurl"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert r.returncode == 2
    assert "invalid URL" in r.stderr


@pytest.mark.parametrize("sig", ["SIGSTOP"])
def test_paused_follower_does_not_block_writes(fresh_cluster: LocalCluster, sig: str) -> None:
    """A frozen follower (SIGSTOP: a GC pause, a stalled VM) must not hold up commits:
    the other two voters are a quorum. Once thawed it catches up on every write."""
    c = fresh_cluster
    c.start_all()
    leader = c.leader()
    follower = next(m for m in c.members.values() if m.name != leader.name)
    c.kill(follower.name, getattr(signal, sig))
    try:
        with Client([leader.url]) as cl:
            revisions = [cl.put(f"paused/{i}", f"v{i}".encode()).revision for i in range(20)]
    finally:
        c.resume(follower.name)
    # Every write committed while the follower was frozen, each at its own revision.
    assert revisions == sorted(set(revisions))
    assert len(revisions) == 20
    wait_for(
        "follower back",
        lambda: httpx.get(follower.url + "/readyz", timeout=1).status_code == 200,
        20,
        ignore=Exception,
    )
    # It catches up: its own state, read without a quorum round, gets every write.
    with Client([follower.url]) as cl:
        wait_for(
            "the thawed follower to apply the writes",
            lambda: cl.get("paused/19", consistency="serializable") is not None,
            20,
            ignore=Exception,
        )
        for i, rev in enumerate(revisions):
            got = cl.get(f"paused/{i}", consistency="serializable")
            assert got is not None
            assert (got.value, got.revision) == (f"v{i}".encode(), rev)
