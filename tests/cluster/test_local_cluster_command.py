"""`raftkv cluster`, the README's run command: it starts a working cluster, and every
way of stopping it (Ctrl-C, SIGTERM from a supervisor, SIGHUP from a closed terminal)
stops its members too — they run in their own sessions, so nothing else would."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _free_base() -> int:
    """A base port B with B..B+2 and B+100..B+102 free (below the ephemeral range)."""
    for base in random.sample(range(24000, 30000, 7), k=800):  # random: parallel runs
        socks: list[socket.socket] = []
        try:
            for port in (*range(base, base + 3), *range(base + 100, base + 103)):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is reaped by its parent (ours already exited): count it as gone.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _member_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_cluster_command_serves_and_stops_its_members(tmp_path: Path, sig: signal.Signals) -> None:
    base = _free_base()
    data = str(tmp_path / "data")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raftkv.cli",
            "cluster",
            "--base-port",
            str(base),
            "--data-dir",
            data,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "cluster is up" in line or not line:
                break
        assert any("cluster is up" in x for x in lines), "".join(lines)
        members = _member_pids(proc.pid)
        assert len(members) == 3
        url = f"http://127.0.0.1:{base + 1}/v1/kv/hello"
        assert httpx.put(url, content=b"world", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{base + 2}/v1/kv/hello", timeout=10).content == b"world"
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in members) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in members)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in _member_pids(proc.pid):
            os.kill(p, signal.SIGKILL)
