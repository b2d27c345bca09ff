"""Real `raftkv serve` processes on 127.0.0.1 for integration tests (and the fault
suite): start, kill -9, SIGTERM, SIGSTOP/SIGCONT, restart, wipe; every process is
reaped and every port freed when the harness closes."""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from raftkv.client import Client
from support.members import free_port, serve_command, spawn_member
from support.wait import wait_for


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    member_id: int = 0
    etcd_port: int = 0
    """The etcd v3 gRPC port (LocalCluster(etcd=True)); 0: the etcd API is off."""

    @property
    def etcd_endpoint(self) -> str:
        return f"127.0.0.1:{self.etcd_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def http(self, timeout: float = 5.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def status(self) -> dict[str, object]:
        r = httpx.get(self.url + "/v1/status", timeout=2)
        r.raise_for_status()
        out: dict[str, object] = r.json()
        return out

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class LocalCluster:
    def __init__(
        self,
        root: Path,
        size: int = 3,
        *,
        snapshot_count: int = 10_000,
        tick_ms: int = 50,
        extra_args: list[str] | None = None,
        secret: str = "test-secret",
        etcd: bool = False,
    ) -> None:
        self.root = root
        self.etcd = etcd
        self.snapshot_count = snapshot_count
        self.tick_ms = tick_ms
        self.extra = extra_args or []
        self.secret = secret
        self.members: dict[str, Member] = {}
        for i in range(size):
            self._new_member(f"m{i + 1}")
        self.initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members.values())

    def _new_member(self, name: str) -> Member:
        m = Member(
            name,
            free_port(),
            free_port(),
            self.root / name,
            self.root / f"{name}.log",
            etcd_port=free_port() if self.etcd else 0,
        )
        self.members[name] = m
        return m

    def _cmd(self, m: Member, *, join: bool = False, member_id: int = 0) -> list[str]:
        cmd = serve_command(
            "--name",
            m.name,
            "--data-dir",
            str(m.data_dir),
            "--listen-client",
            f"127.0.0.1:{m.client_port}",
            "--listen-peer",
            f"127.0.0.1:{m.peer_port}",
            "--peer-secret",
            self.secret,
            "--snapshot-count",
            str(self.snapshot_count),
            "--snapshot-catchup-entries",
            str(min(5000, self.snapshot_count // 5)),
            "--tick-ms",
            str(self.tick_ms),
            "--request-timeout",
            "3",
            "--stop-timeout",
            "5",
            # Only on request: the default (client port + 10000) could take a port
            # another test picked.
            "--listen-etcd",
            m.etcd_endpoint if m.etcd_port else "off",
            *self.extra,
        )
        if join and member_id:
            cmd += ["--join", "--member-id", str(member_id)]
        elif join:
            others = [x.url for x in self.members.values() if x.name != m.name]
            cmd += [
                "--initial-cluster-state",
                "existing",
                "--discovery-endpoints",
                ",".join(others),
            ]
        else:
            cmd += ["--initial-cluster", self.initial]
        return cmd

    def start(self, name: str, *, join: bool = False, member_id: int = 0) -> Member:
        m = self.members[name]
        assert not m.alive(), f"{name} is already running"
        if join:
            m.args = self._cmd(m, join=True, member_id=member_id)
        elif not m.args:
            m.args = self._cmd(m)
        m.proc = spawn_member(m.args, m.log_path)
        return m

    def start_all(self, timeout: float = 30.0) -> None:
        for name in self.members:
            self.start(name)
        self.wait_ready(timeout=timeout)

    def add_process(self, name: str) -> Member:
        """A new member's process slot (ports, data dir); start it with join=True."""
        return self._new_member(name)

    def wait_ready(self, names: list[str] | None = None, timeout: float = 30.0) -> None:
        names = names or [n for n, m in self.members.items() if m.alive()]
        for n in names:
            m = self.members[n]
            wait_for(
                f"{n} ready",
                lambda m=m: m.ready() or self._check_alive(m),  # type: ignore[misc]
                timeout,
                ignore=Exception,
            )

    def _check_alive(self, m: Member) -> bool:
        if m.proc is not None and m.proc.poll() is not None:
            raise AssertionError(f"{m.name} exited with {m.proc.returncode}:\n{m.log()[-3000:]}")
        return False

    def leader(self, timeout: float = 20.0) -> Member:
        def find() -> Member | None:
            ids: dict[int, Member] = {}
            leader_ids = set()
            for m in self.members.values():
                if not m.alive():
                    continue
                try:
                    st = m.status()
                except httpx.HTTPError:
                    continue
                ids[int(st["id"])] = m  # type: ignore[call-overload]
                m.member_id = int(st["id"])  # type: ignore[call-overload]
                if st["role"] == "leader":
                    leader_ids.add(int(st["id"]))  # type: ignore[call-overload]
            if len(leader_ids) == 1:
                return ids[leader_ids.pop()]
            return None

        return wait_for("a single leader", find, timeout, ignore=Exception)

    def endpoints(self, alive_only: bool = True) -> list[str]:
        return [m.url for m in self.members.values() if m.alive() or not alive_only]

    def client(self, **kw: object) -> Client:
        return Client(self.endpoints(), **kw)  # type: ignore[arg-type]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        m = self.members[name]
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                m.proc.wait(timeout=30)

    def stop(self, name: str, timeout: float = 20.0) -> int:
        """SIGTERM and wait: the graceful path; returns the exit code."""
        m = self.members[name]
        assert m.proc is not None
        if m.proc.poll() is None:
            m.proc.send_signal(signal.SIGTERM)
        try:
            return m.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait()
            raise

    def pause(self, name: str) -> None:
        self.kill(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.kill(name, signal.SIGCONT)

    def wipe(self, name: str) -> None:
        m = self.members[name]
        assert not m.alive()
        shutil.rmtree(m.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        """Started, with a leader elected; closed on the way out whatever happens (a
        member that fails to start closes the others too)."""
        try:
            self.start_all()
            self.leader()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for m in self.members.values():
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGCONT)
                m.proc.kill()
            if m.proc is not None:
                m.proc.wait(timeout=30)
