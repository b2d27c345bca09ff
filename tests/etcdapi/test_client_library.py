"""A Python etcd client from PyPI (aetcd) runs a workload unchanged against raftkv's
etcd port, through a follower (writes, leases and the lock go to the leader)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.harness import LocalCluster


def test_aetcd_workload_runs_unchanged(cluster: LocalCluster) -> None:
    if importlib.util.find_spec("aetcd") is None:  # not imported: see the workload's doc
        pytest.skip("aetcd is not installed (dev extra)")
    leader = cluster.leader()
    follower = next(m for m in cluster.members.values() if m is not leader)
    script = Path(__file__).with_name("aetcd_workload.py")
    r = subprocess.run(
        [sys.executable, str(script), "127.0.0.1", str(follower.etcd_port)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "workload ok" in r.stdout, r.stdout
