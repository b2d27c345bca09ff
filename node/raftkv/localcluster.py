"""`raftkv cluster`: a local N-member cluster of real `raftkv serve` processes on
loopback, for trying raftkv on a laptop. Ctrl-C stops every member cleanly."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .server.config import ETCD_PORT_OFFSET


def member_ports(base_port: int, i: int) -> tuple[int, int]:
    """Client ports are base..base+N-1, peer ports base+100.. (easy to remember)."""
    return base_port + i, base_port + 100 + i


def run_local_cluster(
    *, size: int, data_dir: Path, base_port: int, fresh: bool, snapshot_count: int
) -> int:
    if size < 1:
        print("raftkv cluster: --size must be at least 1", file=sys.stderr)
        return 2
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    names = [f"m{i + 1}" for i in range(size)]
    initial = ",".join(
        f"{n}=http://127.0.0.1:{member_ports(base_port, i)[1]}" for i, n in enumerate(names)
    )
    procs: list[subprocess.Popen[bytes]] = []
    # The members run in their own sessions (a terminal's Ctrl-C must reach only us, so
    # that we stop them in order); so every way we can be told to stop must end here.
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _run(names, initial, data_dir, base_port, snapshot_count, procs)
    except (KeyboardInterrupt, _Stop):
        print("\nraftkv: stopping")
        return 0
    finally:
        _stop_all(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Stop(Exception):
    """SIGTERM or SIGHUP arrived."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def _run(
    names: list[str],
    initial: str,
    data_dir: Path,
    base_port: int,
    snapshot_count: int,
    procs: list[subprocess.Popen[bytes]],
) -> int:
    size = len(names)
    endpoints = []
    for i, name in enumerate(names):
        cport, pport = member_ports(base_port, i)
        endpoints.append(f"http://127.0.0.1:{cport}")
        log = open(data_dir / f"{name}.log", "ab")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "raftkv.cli",
                    "serve",
                    "--name",
                    name,
                    "--data-dir",
                    str(data_dir / name),
                    "--listen-client",
                    f"127.0.0.1:{cport}",
                    "--listen-peer",
                    f"127.0.0.1:{pport}",
                    "--initial-cluster",
                    initial,
                    "--snapshot-count",
                    str(snapshot_count),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    ok = _wait_ready(endpoints, procs, timeout=30)
    print(f"raftkv: {size}-member cluster {'is up' if ok else 'is starting (not ready yet)'}")
    etcd = [f"127.0.0.1:{member_ports(base_port, i)[0] + ETCD_PORT_OFFSET}" for i in range(size)]
    for name, ep, etcd_ep in zip(names, endpoints, etcd, strict=True):
        print(f"  {name}  {ep}   etcd {etcd_ep}   (log: {data_dir / (name + '.log')})")
    print("try:  raftkv put hello world && raftkv get hello && raftkv status")
    print(f"      etcdctl --endpoints={','.join(etcd)} get hello   (etcd's v3 API, docs/etcd.md)")
    print(f"      export RAFTKV_ENDPOINTS={','.join(endpoints)}   (defaults match base port 23790)")
    print("Ctrl-C stops the cluster; its data stays in", data_dir, flush=True)
    while all(p.poll() is None for p in procs):
        time.sleep(0.5)
    print("raftkv: a member exited; stopping the cluster", file=sys.stderr)
    return 0


def _wait_ready(endpoints: list[str], procs: list[subprocess.Popen[bytes]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        if all(_ready(ep) for ep in endpoints):
            return True
        time.sleep(0.2)
    return False


def _ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except Exception:
        return False


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
