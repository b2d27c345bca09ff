"""Starting member processes: the one spawner the tests, ``e2e/local`` and the bench
scripts share (``raftkv cluster`` in ``raftkv.localcluster`` has its own: it is the
product)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: ``raftkv`` as this interpreter runs it, without relying on the console script.
RAFTKV = (sys.executable, "-m", "raftkv.cli")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open until all are found)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def serve_command(
    *flags: str, program: Sequence[str] = RAFTKV, etcd_default: bool = False
) -> list[str]:
    """The argv of ``raftkv serve <flags>``; ``program`` is how to run ``raftkv``.

    Unless the flags name ``--listen-etcd`` (or ``etcd_default``), the etcd API is
    turned off: its default port (client port + 10000) is one the test did not reserve,
    and across a suite that starts hundreds of members such ports land on ones that
    ``free_port`` has just handed to another test's member."""
    extra = [] if etcd_default or "--listen-etcd" in flags else ["--listen-etcd", "off"]
    return [*program, "serve", *flags, *extra]


def spawn_member(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    banner: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path``.

    The environment is ``base_env`` (default: this process's), then
    ``PYTHONUNBUFFERED=1`` (so a killed member's last lines are in its log), then
    ``env``. With ``banner``, a ``--- start HH:MM:SS ---`` line first separates the
    restarts of one member in one log. The caller reaps the process.
    """
    with open(log_path, "ab") as out:
        if banner:
            out.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
            out.flush()
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                **(os.environ if base_env is None else base_env),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            cwd=cwd,
        )
