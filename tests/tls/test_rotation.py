"""Certificates replaced on disk while the cluster serves: new handshakes present the
new certificates, no request fails, and a bad replacement changes nothing but a
counter."""

from __future__ import annotations

import datetime as dt
import threading

import httpx

from raftkv.client import Client
from support.wait import wait_for

from .handshake import tcp_handshake
from .members import TLSCluster, TLSMember


class _Writer(threading.Thread):
    """Writes continuously, one new TLS connection per request (no keep-alive), so
    handshakes happen all through the rotation; one attempt each, no retries: any
    failure is a failure."""

    def __init__(self, cluster: TLSCluster) -> None:
        super().__init__(daemon=True)
        transport = httpx.HTTPTransport(
            verify=cluster.client_ssl(), limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.client = Client([m.url for m in cluster.members], retries=0, transport=transport)
        self.stop = threading.Event()
        self.ok: list[str] = []
        self.failed: list[str] = []

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            key = f"rot/{i:06d}"
            try:
                self.client.put(key, b"v")
                self.ok.append(key)
            except Exception as exc:
                self.failed.append(f"{key}: {exc!r}")
            i += 1

    def wait_writes(self, n: int) -> None:
        start = len(self.ok)
        wait_for(f"{n} more writes", lambda: len(self.ok) >= start + n or self.failed, 60)


def _presented(cluster: TLSCluster, m: TLSMember) -> tuple[int, int]:
    """The serials `m` presents on new connections: (client port, peer port)."""
    return tcp_handshake(m.client_port, cluster.client_ssl()), tcp_handshake(
        m.peer_port, cluster.peer_ssl()
    )


def test_rotation_under_load_fails_no_request(fresh_cluster: TLSCluster) -> None:
    c = fresh_cluster
    c.start_all()
    c.wait_ready()
    writer = _Writer(c)
    writer.start()
    try:
        writer.wait_writes(20)
        new = {}
        for m in c.members:
            server, peer = c.client_ca.issue(m.name), c.peer_ca.issue(m.name)
            m.server.put(c.client_ca.pem, server)
            m.peer.put(c.peer_ca.pem, peer)
            new[m.name] = (server.serial, peer.serial)
        for m in c.members:
            wait_for(
                f"{m.name} presents its new certificates",
                lambda m=m: _presented(c, m) == new[m.name],  # type: ignore[misc]
                30,
            )
        writer.wait_writes(20)
    finally:
        writer.stop.set()
        writer.join(timeout=30)
        writer.client.close()
    assert writer.failed == []
    for m in c.members:
        for kind in ("server", "peer"):
            assert c.metric(m, "raftkv_certificate_reloads_total", kind) == 1
            assert c.metric(m, "raftkv_certificate_reload_failures_total", kind) == 0
    # Every acknowledged write is there (members still talk after the peer rotation).
    with c.client() as cl:
        keys = [kv.key for kv in cl.list("rot/", limit=10_000)]
    assert keys == writer.ok


def test_a_bad_new_certificate_keeps_the_old_one_in_use(fresh_cluster: TLSCluster) -> None:
    c = fresh_cluster
    c.start_all()
    c.wait_ready()
    m = c.members[0]
    before = _presented(c, m)
    # The server certificate with someone else's key; the peer certificate expired.
    m.server.put(c.client_ca.pem, c.client_ca.issue(), key_pem=c.client_ca.issue().key_pem)
    m.peer.put(c.peer_ca.pem, c.peer_ca.issue(not_after=dt.timedelta(seconds=-1)))
    for kind in ("server", "peer"):
        wait_for(
            f"the {kind} reload failure counted",
            lambda kind=kind: c.metric(m, "raftkv_certificate_reload_failures_total", kind) == 1,  # type: ignore[misc]
            30,
        )
    assert _presented(c, m) == before
    with c.client() as cl:
        cl.endpoints = [m.url]
        assert cl.put("still", b"serving").revision > 0
    log = m.log()
    assert f"{m.server.key}: key does not match the certificate in {m.server.cert}" in log
    assert f"{m.peer.cert}: certificate expired on" in log
