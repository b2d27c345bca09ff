"""The local three-member clusters the benchmarks compare: raftkv (real `raftkv serve`
processes, through the test helpers' spawner) and etcd 3.4 (Debian's `/usr/bin/etcd`,
`apt-get install etcd-server`), both on loopback with default settings.

Shared by kv_bench.py (native HTTP API against etcd's JSON gateway), watch_bench.py and
grpc_bench.py (etcd's v3 gRPC API on both), so that every benchmark compares the same
two clusters started the same way. Run the benchmarks with PYTHONPATH=tests (the
member spawner lives in tests/support), as the Makefile's bench targets do.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from support.members import free_port, serve_command, spawn_member


def wait_http(
    url: str, timeout: float = 30, method: str = "GET", body: bytes | None = None
) -> None:
    """Poll `url` until it answers 2xx; a member that never does is a failed start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, data=body, method=method)
            with urllib.request.urlopen(req, timeout=1) as r:
                if r.status < 300:
                    return
        except Exception:
            time.sleep(0.2)
    raise TimeoutError(url)


@dataclass
class Cluster:
    """Three member processes. `endpoints` are HTTP base URLs (native API for raftkv,
    etcd's client URL for etcd); `grpc_endpoints` are the `host:port` of etcd's v3 gRPC
    API on each member (empty when raftkv was started without it)."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    grpc_endpoints: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def peak_rss_mb(self) -> list[float]:
        """Each member's peak resident set (VmHWM), read while it still runs."""
        out = []
        for p in self.procs:
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        out.append(int(line.split()[1]) / 1024)
            except OSError:
                out.append(float("nan"))
        return out


def start_raftkv(root: Path, *, etcd_api: bool = False) -> Cluster:
    """Three raftkv members on 127.0.0.1; with `etcd_api`, each also serves etcd's v3
    gRPC API on a port of its own (`--listen-etcd`), listed in `grpc_endpoints`."""
    c = Cluster()
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = ",".join(f"m{i + 1}=http://127.0.0.1:{pp}" for i, (_, pp) in enumerate(ports))
    for i, (cp, pp) in enumerate(ports):
        flags = [
            "--name",
            f"m{i + 1}",
            "--data-dir",
            str(root / f"raftkv-m{i + 1}"),
            "--listen-client",
            f"127.0.0.1:{cp}",
            "--listen-peer",
            f"127.0.0.1:{pp}",
            "--initial-cluster",
            initial,
            "--peer-secret",
            "bench",
            "--log-level",
            "warning",
        ]
        if etcd_api:
            grpc = f"127.0.0.1:{free_port()}"
            flags += ["--listen-etcd", grpc]
            c.grpc_endpoints.append(grpc)
        argv = serve_command(*flags)
        c.procs.append(spawn_member(argv, root / f"raftkv-m{i + 1}.log"))
        c.endpoints.append(f"http://127.0.0.1:{cp}")
    _wait_started(c, "/readyz")
    return c


def start_etcd(root: Path) -> Cluster | None:
    """Three etcd members with default settings (None when etcd is not installed).
    etcd serves gRPC and its JSON gateway on the same client port."""
    etcd = shutil.which("etcd")
    if etcd is None:
        return None
    c = Cluster()
    ports = [(free_port(), free_port()) for _ in range(3)]
    initial = ",".join(f"e{i + 1}=http://127.0.0.1:{pp}" for i, (_, pp) in enumerate(ports))
    for i, (cp, pp) in enumerate(ports):
        c.procs.append(
            spawn_member(
                [
                    etcd,
                    "--name",
                    f"e{i + 1}",
                    "--data-dir",
                    str(root / f"etcd-e{i + 1}"),
                    "--listen-client-urls",
                    f"http://127.0.0.1:{cp}",
                    "--advertise-client-urls",
                    f"http://127.0.0.1:{cp}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{pp}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{pp}",
                    "--initial-cluster",
                    initial,
                    "--initial-cluster-state",
                    "new",
                    "--log-level",
                    "error",
                ],
                root / f"etcd-e{i + 1}.log",
            )
        )
        c.endpoints.append(f"http://127.0.0.1:{cp}")
        c.grpc_endpoints.append(f"127.0.0.1:{cp}")
    _wait_started(c, "/health")
    return c


def _wait_started(c: Cluster, path: str) -> None:
    """Every member answers `path`; else stop them all (no process outlives a failed
    start) and raise."""
    try:
        for ep in c.endpoints:
            wait_http(ep + path)
    except BaseException:
        c.stop()
        raise
