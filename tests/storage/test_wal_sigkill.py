"""SIGKILL a writer at random moments: every index it reported durable survives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from raftkv.storage import WAL

CHILD = Path(__file__).with_name("wal_child.py")
ITERATIONS = 20


def payload(index: int) -> bytes:
    """Must match wal_child.payload (the child runs as a script, not an import)."""
    return (f"{index}:" * (1 + index % 13)).encode()


def test_sigkill_never_loses_reported_entries(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    d = tmp_path / "wal"
    promised = 0
    for it in range(ITERATIONS):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(d), str(it)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        try:
            assert proc.stdout is not None
            reported: list[int] = []
            wanted = rng.randint(1, 60)
            while len(reported) < wanted:
                line = proc.stdout.readline()
                assert line, f"child died early: {proc.stderr.read() if proc.stderr else b''!r}"
                reported.append(int(line))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        # Lines already in the pipe were printed after wait() returned: promises too.
        rest = proc.stdout.read() if proc.stdout else b""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        assert proc.returncode == -signal.SIGKILL
        reported += [int(x) for x in rest.split()]
        promised = max(promised, *reported)

        wal, replay = WAL.open(d)
        wal.close()
        indexes = [e.index for e in replay.entries]
        assert indexes == list(range(1, len(indexes) + 1)), f"iteration {it}: log has gaps"
        assert len(indexes) >= promised, f"iteration {it}: lost {promised - len(indexes)}"
        assert all(e.data == payload(e.index) for e in replay.entries)
    assert promised > ITERATIONS
