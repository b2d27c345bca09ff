"""bench/grpc_bench.py runs end to end: a fraction of a second per case against a real
three-member raftkv (--skip-etcd), every case that takes part in the comparison,
and the table comes out with figures and no errors. The figures are not judged: this
machine is shared and busy, and the benchmark reports, it does not pass or fail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_grpc_bench_runs_every_case_briefly() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "grpc_bench.py"),
        "--skip-etcd",
        "--seconds",
        "0.3",
        "--procs",
        "1",
        "--watchers",
        "4",
        "--watch-rate",
        "50",
    ]
    # Its own session: on a timeout the bench and the members it started go together.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"grpc_bench did not finish:\n{out.decode(errors='replace')}")
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    rows = {
        "Put x1",
        "Put x16",
        "Put x64",
        "Range linearizable x64",
        "Range serializable x64",
        "Txn (CAS) x64",
        "watch 4 x 50/s",
    }
    lines = text.splitlines()
    for row in rows:
        line = next((x for x in lines if x.startswith(row)), None)
        assert line is not None, f"no {row!r} row:\n{text}"
        # The raftkv columns hold figures: ops/s first, and it is not zero.
        ops = line[len(row) :].split()[0]
        assert ops != "-", text
        assert float(ops.replace(",", "")) > 0, text
    assert "errors (" not in text, text
    assert "raftkv peak RSS per member (MB): " in text, text
