"""`raftkv verify` against a small local cluster (plain loopback processes, no root
needed): a few seconds of traffic must be linearizable, the outputs must exist, and the
run's keys must be gone afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.harness import LocalCluster
from raftkv.client import Client

_VERIFY = [sys.executable, "-m", "raftkv.cli", "verify"]


@pytest.fixture
def small_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    (tmp_path / "cluster").mkdir()
    with LocalCluster(tmp_path / "cluster", 3) as c:
        yield c


@pytest.mark.timeout(120)
def test_raftkv_verify_against_a_running_cluster(
    small_cluster: LocalCluster, tmp_path: Path
) -> None:
    out = tmp_path / "verify-out"
    eps = ",".join(small_cluster.endpoints())
    with Client(small_cluster.endpoints()) as c:
        c.put("user/key", b"untouched")
    proc = subprocess.run(
        [
            *_VERIFY,
            "--endpoints",
            eps,
            "--duration",
            "4s",
            "--rate",
            "30",
            "--seed",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: OK" in proc.stdout
    assert f"history: {out / 'history.jsonl'}" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "ok"
    assert summary["by_status"]["ok"] > 50
    prefix = summary["prefix"]
    assert prefix.startswith("__raftkv_verify__/")
    assert (out / "latency.png").stat().st_size > 10_000
    with Client(small_cluster.endpoints()) as c:
        assert c.list(prefix) == []  # cleaned up
        got = c.get("user/key")  # and nothing else touched
        assert got is not None
        assert got.value == b"untouched"


def test_raftkv_verify_unreachable_cluster_exits_nonzero(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *_VERIFY,
            "--endpoints",
            "http://127.0.0.1:9",
            "--duration",
            "1s",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "no endpoint answered" in proc.stderr


def test_raftkv_verify_rejects_a_bad_duration() -> None:
    proc = subprocess.run(
        [*_VERIFY, "--duration", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "not a duration" in proc.stderr
