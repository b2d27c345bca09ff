"""Lock safety under faults: four processes contend for one `Lock` while the leader is
killed (SIGKILL) and restarted, twice. Each holder does a fenced write (a txn that
writes only while its lock key, with the create revision it was granted, still
exists) and records (fence, start, end) on the one machine-wide monotonic clock.
The intervals whose fenced write went through never overlap, and their fences grow
in the order the intervals come."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from cluster.harness import LocalCluster
from support.wait import wait_for

CONTENDER = r"""
import json, sys, time
from raftkv.client import Client
from raftkv.client_ops import Compare, Op
from raftkv.concurrency import Lock

endpoints, name, out, until = sys.argv[1].split(","), sys.argv[2], sys.argv[3], float(sys.argv[4])
with Client(endpoints, timeout=5) as c, open(out, "a") as f:
    while time.monotonic() < until:
        lock = Lock(c, name, ttl=3)
        try:
            if not lock.acquire(timeout=10):
                continue
        except Exception as exc:  # a fault while waiting: try again
            f.write(json.dumps({"error": repr(exc)}) + "\n")
            continue
        start = time.monotonic()
        ok = False
        try:
            r = (
                c.txn()
                .if_(Compare.create(lock.key) == lock.revision)
                .then(Op.put("fenced", str(lock.revision)))
                .commit()
            )
            ok = r.succeeded
            time.sleep(0.05)
        except Exception as exc:
            f.write(json.dumps({"error": repr(exc)}) + "\n")
        end = time.monotonic()
        f.write(json.dumps({"fence": lock.revision, "start": start, "end": end, "ok": ok}) + "\n")
        f.flush()
        try:
            lock.release()
        except Exception:
            pass
"""


def test_lock_intervals_never_overlap_through_leader_kills(
    fresh_cluster: LocalCluster, tmp_path: Path
) -> None:
    c = fresh_cluster
    seconds = 20.0
    until = time.monotonic() + seconds
    outs = [tmp_path / f"holder{i}.jsonl" for i in range(4)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CONTENDER,
                ",".join(c.endpoints()),
                "fenced-lock",
                str(o),
                str(until),
            ]
        )
        for o in outs
    ]
    try:
        for _ in range(2):
            time.sleep(4)  # let holders come and go between faults
            leader = c.leader()
            c.kill(leader.name, signal.SIGKILL)
            c.leader()
            c.start(leader.name)
            c.wait_ready()
        for p in procs:
            p.wait(timeout=seconds + 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    rows = [json.loads(line) for o in outs if o.exists() for line in o.read_text().splitlines()]
    held = sorted((r["start"], r["end"], r["fence"]) for r in rows if "fence" in r and r["ok"])
    assert len(held) >= 8, f"too few holds to say anything: {rows}"
    for (s1, e1, f1), (s2, e2, f2) in itertools.pairwise(held):
        assert e1 <= s2, f"holds overlap: fence {f1} [{s1}, {e1}] and fence {f2} [{s2}, {e2}]"
        assert f1 < f2, f"fences out of order: {f1} then {f2}"
    with_leader = c.leader()
    wait_for("the cluster to answer", with_leader.ready, 10)
