"""TLS members as real `raftkv serve` processes on 127.0.0.1: each with its server and
peer certificates in Secret-like directories (`pki.SecretDir`) so tests can rotate
them in place. Every process is reaped and every port freed by `close()`."""

from __future__ import annotations

import signal
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from raftkv.client import Client
from raftkv.tls import CertFiles, check_cert, client_context, client_ssl_context
from support.members import free_ports, serve_command, spawn_member
from support.wait import wait_for

from .pki import CA, SecretDir


@dataclass
class TLSMember:
    name: str
    root: Path
    client_port: int
    peer_port: int
    server: SecretDir
    peer: SecretDir
    proc: subprocess.Popen[bytes] | None = None
    join: bool = False
    """Join the running cluster (finding its id through https discovery)."""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class TLSCluster:
    """`size` members sharing a client CA (server and client certificates) and a peer
    CA; `client_cert_auth` turns on --client-cert-auth everywhere."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        *,
        client_cert_auth: bool = False,
        reload_interval: float = 0.1,
        extra: list[str] | None = None,
    ) -> None:
        self.root = root
        self.extra = extra or []
        self.client_ca = CA("raftkv client CA")
        self.peer_ca = CA("raftkv peer CA")
        self.client_cert = self.client_ca.issue("test client")
        self.client_dir = SecretDir(root / "client", self.client_ca, self.client_cert)
        self.peer_probe = SecretDir(root / "peer-probe", self.peer_ca, self.peer_ca.issue("probe"))
        self.client_cert_auth = client_cert_auth
        self.reload_interval = reload_interval
        ports = free_ports(2 * size)
        self.members = [
            TLSMember(
                f"m{i + 1}",
                root,
                ports[2 * i],
                ports[2 * i + 1],
                SecretDir(root / f"m{i + 1}-server", self.client_ca, self.client_ca.issue()),
                SecretDir(root / f"m{i + 1}-peer", self.peer_ca, self.peer_ca.issue()),
            )
            for i in range(size)
        ]
        self.initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def args(self, m: TLSMember) -> list[str]:
        return serve_command(
            "--name", m.name,
            "--data-dir", str(self.root / f"{m.name}.data"),
            "--listen-client", f"https://127.0.0.1:{m.client_port}",
            "--listen-peer", f"https://127.0.0.1:{m.peer_port}",
            *self._start_flags(m),
            "--peer-secret", "test-secret",
            "--tick-ms", "100",
            "--request-timeout", "3",
            "--stop-timeout", "5",
            "--cert-file", str(m.server.cert),
            "--key-file", str(m.server.key),
            "--trusted-ca-file", str(m.server.ca),
            *(["--client-cert-auth"] if self.client_cert_auth else []),
            "--peer-cert-file", str(m.peer.cert),
            "--peer-key-file", str(m.peer.key),
            "--peer-trusted-ca-file", str(m.peer.ca),
            "--tls-reload-interval", str(self.reload_interval),
            *self.extra,
        )  # fmt: skip

    def _start_flags(self, m: TLSMember) -> list[str]:
        if not m.join:
            return ["--initial-cluster", self.initial]
        others = ",".join(x.url for x in self.members if x is not m)
        return ["--initial-cluster-state", "existing", "--discovery-endpoints", others]

    def add_joiner(self, name: str) -> TLSMember:
        """A new member's slot (ports, certificates); start it with `start` once the
        cluster has added it as a learner."""
        client_port, peer_port = free_ports(2)
        m = TLSMember(
            name,
            self.root,
            client_port,
            peer_port,
            SecretDir(self.root / f"{name}-server", self.client_ca, self.client_ca.issue()),
            SecretDir(self.root / f"{name}-peer", self.peer_ca, self.peer_ca.issue()),
            join=True,
        )
        self.members.append(m)
        return m

    def start(self, m: TLSMember) -> None:
        m.proc = spawn_member(self.args(m), m.log_path, banner=True)

    def start_all(self) -> None:
        for m in self.members:
            self.start(m)

    # -- clients -------------------------------------------------------------------------

    def client_ssl(self, *, with_cert: bool = True) -> ssl.SSLContext:
        """What a client trusts (the client CA) and presents (a client certificate)."""
        if with_cert:
            return client_ssl_context(self.client_dir.ca, self.client_dir.cert, self.client_dir.key)
        return client_ssl_context(self.client_dir.ca)

    def peer_ssl(self) -> ssl.SSLContext:
        """A client of the peer ports with a peer certificate of the cluster's CA that
        no member uses (so tests may break members' own files)."""
        probe = check_cert(CertFiles(self.peer_probe.cert, self.peer_probe.key))
        return client_context(self.peer_ca.pem, probe)

    def client(self, **kw: object) -> Client:
        return Client([m.url for m in self.members], verify=self.client_ssl(), **kw)  # type: ignore[arg-type]

    def get(self, m: TLSMember, path: str, timeout: float = 2.0) -> httpx.Response:
        with httpx.Client(verify=self.client_ssl(), timeout=timeout) as h:
            return h.get(m.url + path)

    def ready(self, m: TLSMember) -> bool:
        if not m.alive():
            raise AssertionError(
                f"{m.name} exited with {m.proc and m.proc.returncode}:\n{m.log()[-3000:]}"
            )
        try:
            return self.get(m, "/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, members: list[TLSMember] | None = None, timeout: float = 30.0) -> None:
        for m in members or self.members:
            wait_for(f"{m.name} ready", lambda m=m: self.ready(m), timeout)  # type: ignore[misc]

    def metric(self, m: TLSMember, name: str, kind: str | None = None) -> float | None:
        """A sample of `m`'s /metrics: `name`, with `kind` as its one label if given."""
        text = self.get(m, "/metrics").text
        prefix = f"{name} " if kind is None else f'{name}{{kind="{kind}"}} '
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix) :])
        return None

    def close(self) -> None:
        """SIGTERM every member at once (a member stops within its --stop-timeout),
        then reap; SIGKILL whatever is still running past the deadline."""
        procs = [m.proc for m in self.members if m.proc is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
