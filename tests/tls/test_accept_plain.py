"""Turning TLS on in a running cluster, member by member, with real processes: the
three restarts an operator makes (docs/tls.md, "Turning TLS on in a running
cluster"), writes between every step, and every write readable on every member at
the end.

1. `accept`: certificates and `--client-accept-plain` / `--peer-accept-plain`, URLs
   still http: each port takes both kinds of connection.
2. `advertise`: the same, with https URLs: the member publishes its new peer URL
   through Raft (only the scheme changed), so the others dial it over TLS.
3. `tls`: https only.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from raftkv.client import Client
from support.members import serve_command, spawn_member
from support.wait import wait_for

from .handshake import peer_port_accepts
from .members import TLSCluster, TLSMember

pytestmark = pytest.mark.timeout(300)

PHASES = ("plain", "accept", "advertise", "tls")


class Transition(TLSCluster):
    def __init__(self, root: Path) -> None:
        super().__init__(root, 3)
        self.phase = {m.name: "plain" for m in self.members}
        self.initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)

    def scheme(self, m: TLSMember) -> str:
        return "http" if self.phase[m.name] in ("plain", "accept") else "https"

    def base(self, m: TLSMember) -> str:
        return f"{self.scheme(m)}://127.0.0.1:{m.client_port}"

    def args(self, m: TLSMember) -> list[str]:
        phase, scheme = self.phase[m.name], self.scheme(m)
        tls: list[str] = []
        if phase != "plain":
            tls = [
                "--cert-file", str(m.server.cert),
                "--key-file", str(m.server.key),
                "--trusted-ca-file", str(m.server.ca),
                "--peer-cert-file", str(m.peer.cert),
                "--peer-key-file", str(m.peer.key),
                "--peer-trusted-ca-file", str(m.peer.ca),
            ]  # fmt: skip
        if phase in ("accept", "advertise"):
            tls += ["--client-accept-plain", "--peer-accept-plain"]
        initial = self.initial
        if phase == "tls":  # restarts read their data dir; the flag only has to be valid
            initial = initial.replace("http://", "https://")
        return serve_command(
            "--name", m.name,
            "--data-dir", str(self.root / f"{m.name}.data"),
            "--listen-client", f"127.0.0.1:{m.client_port}",
            "--listen-peer", f"127.0.0.1:{m.peer_port}",
            "--advertise-client-url", f"{scheme}://127.0.0.1:{m.client_port}",
            "--advertise-peer-url", f"{scheme}://127.0.0.1:{m.peer_port}",
            "--initial-cluster", initial,
            "--peer-secret", "test-secret",
            "--tick-ms", "100",
            "--request-timeout", "3",
            "--stop-timeout", "5",
            *tls,
        )  # fmt: skip

    def start(self, m: TLSMember) -> None:
        m.proc = spawn_member(self.args(m), m.log_path, banner=True)

    def restart(self, m: TLSMember, phase: str) -> None:
        assert m.proc is not None
        m.proc.terminate()
        m.proc.wait(timeout=20)
        self.phase[m.name] = phase
        self.start(m)

    def http(self, m: TLSMember) -> httpx.Client:
        verify: ssl.SSLContext | bool = self.client_ssl(with_cert=False)
        return httpx.Client(base_url=self.base(m), verify=verify, timeout=3)

    def ready(self, m: TLSMember) -> bool:
        if not m.alive():
            raise AssertionError(f"{m.name} exited:\n{m.log()[-3000:]}")
        try:
            with self.http(m) as h:
                return h.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def kv(self) -> Client:
        return Client([self.base(m) for m in self.members], verify=self.client_ssl(with_cert=False))


def _write(c: Transition, tag: str, n: int = 10) -> list[str]:
    keys = [f"t/{tag}/{i}" for i in range(n)]
    with c.kv() as kv:
        for k in keys:
            wait_for(f"put {k}", lambda k=k: kv.put(k, k.encode()) is not None, 30)  # type: ignore[misc]
    return keys


def _peer_urls(c: Transition) -> dict[str, str]:
    with c.http(c.members[0]) as h:
        body = h.get("/v1/members").json()
    return {m["name"]: m["peer_urls"][0] for m in body["members"]}


def _plain_answer(port: int) -> bool:
    """Whether plain HTTP on `port` gets an HTTP answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(b"GET /raft/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


def _has(c: Transition, want: dict[str, str]) -> Callable[[], bool]:
    return lambda: _peer_urls(c) == want


def test_tls_turned_on_member_by_member_loses_nothing(tmp_path: Path) -> None:
    c = Transition(tmp_path)
    written: list[str] = []
    try:
        c.start_all()
        c.wait_ready()
        written += _write(c, "plain")
        for phase in PHASES[1:]:
            for m in c.members:
                c.restart(m, phase)
                c.wait_ready([m])
                written += _write(c, f"{phase}-{m.name}")
            if phase == "accept":
                # Both kinds of client connection on one port, answered alike.
                m = c.members[0]
                plain = httpx.get(f"http://127.0.0.1:{m.client_port}/readyz", timeout=3)
                secure = httpx.get(
                    f"https://127.0.0.1:{m.client_port}/readyz",
                    verify=c.client_ssl(with_cert=False),
                    timeout=3,
                )
                assert plain.status_code == secure.status_code == 200
                # The peer port too: a TLS client with a peer certificate, and plain.
                assert peer_port_accepts(m.peer_port, c.peer_ssl())
                assert _plain_answer(m.peer_port)
            if phase == "advertise":
                want = {m.name: f"https://127.0.0.1:{m.peer_port}" for m in c.members}
                wait_for("https peer URLs in the registry", _has(c, want), 30)
        for m in c.members:  # plain is gone at the end, on both ports
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{m.client_port}/readyz", timeout=3)
            assert not _plain_answer(m.peer_port)
            assert peer_port_accepts(m.peer_port, c.peer_ssl())
        with c.kv() as kv:
            for m in c.members:
                with c.http(m) as h:
                    assert h.get("/readyz").status_code == 200
            missing = [k for k in written if kv.get(k) is None]
        assert not missing, missing
    finally:
        c.close()


def test_accept_plain_needs_the_certificates(tmp_path: Path) -> None:
    from raftkv.server.config import ServerConfig, check_tls_flags

    for flags, msg in (
        ({"client_accept_plain": True}, "--client-accept-plain needs client TLS"),
        ({"peer_accept_plain": True}, "--peer-accept-plain needs peer TLS"),
    ):
        with pytest.raises(ValueError, match=msg):
            check_tls_flags(ServerConfig(name="m1", data_dir=tmp_path, **flags))  # type: ignore[arg-type]


def test_only_a_scheme_change_is_published_by_the_member() -> None:
    from raftkv.server.membership import scheme_changed

    http, https = ("http://10.0.0.1:2380",), ("https://10.0.0.1:2380",)
    assert scheme_changed(http, https)
    assert scheme_changed(https, http)
    assert not scheme_changed(http, http)
    assert not scheme_changed(http, ("https://10.0.0.2:2380",))  # an address change
    assert not scheme_changed(http, ("ftp://10.0.0.1:2380",))
    assert not scheme_changed(http, (*https, *https))
    assert not scheme_changed((), https)


def test_accept_plain_allows_http_urls_beside_the_certificates(tmp_path: Path) -> None:
    from raftkv.server.config import ServerConfig, check_tls_schemes

    peer = {
        "peer_cert_file": "p.crt",
        "peer_key_file": "p.key",
        "peer_trusted_ca_file": "ca.crt",
        "advertise_peer_url": "http://127.0.0.1:2380",
    }
    with pytest.raises(ValueError, match="use https"):
        check_tls_schemes(ServerConfig(name="m1", data_dir=tmp_path, **peer))  # type: ignore[arg-type]
    check_tls_schemes(ServerConfig(name="m1", data_dir=tmp_path, peer_accept_plain=True, **peer))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_connection_that_says_nothing_is_closed(tmp_path: Path) -> None:
    import asyncio

    import uvicorn

    from raftkv.server.dual_listener import serve_tls_and_plain
    from raftkv.tls import CertFiles, check_cert, server_context

    from .pki import CA, SecretDir

    ca = CA()
    d = SecretDir(tmp_path / "s", ca, ca.issue())
    ctx = server_context(check_cert(CertFiles(d.cert, d.key)), None)

    async def app(scope: object, receive: object, send: object) -> None:  # never called
        raise AssertionError("no request was sent")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    served = asyncio.create_task(server.serve(sockets=[]))
    listener = asyncio.create_task(serve_tls_and_plain(sock, server, ctx, first_byte_timeout=0.2))
    try:
        reader, writer = await asyncio.open_connection(*sock.getsockname())
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # closed by the listener, not answered
        writer.close()
    finally:
        listener.cancel()
        server.should_exit = True
        await asyncio.gather(listener, served, return_exceptions=True)
        sock.close()
