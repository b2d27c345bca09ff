"""The etcd port over TLS, from the client port's certificates: etcdctl with the CA
(and a client certificate under --client-cert-auth) works, without one it cannot."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from support.members import free_port
from support.wait import wait_for
from tls.members import TLSCluster

from .tools import etcdctl, etcdctl_fails


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[tuple[TLSCluster, str]]:
    port = free_port()
    c = TLSCluster(tmp_path, 1, client_cert_auth=True, extra=["--listen-etcd", f"127.0.0.1:{port}"])
    try:
        c.start_all()
        c.wait_ready()
        yield c, f"https://127.0.0.1:{port}"
    finally:
        c.close()


def test_etcdctl_over_mutual_tls(secure: tuple[TLSCluster, str]) -> None:
    c, ep = secure
    d = c.client_dir
    creds = [f"--cacert={d.ca}", f"--cert={d.cert}", f"--key={d.key}"]
    assert etcdctl([ep], *creds, "put", "secure", "yes").strip() == "OK"
    assert etcdctl([ep], *creds, "get", "secure", "--print-value-only").strip() == "yes"
    members = etcdctl([ep], *creds, "member", "list")
    assert ep in members  # it advertises https://
    etcdctl_fails([ep], f"--cacert={d.ca}", "--command-timeout=3s", "get", "secure")


def _served_serial(c: TLSCluster, ep: str) -> int:
    host, port = ep.removeprefix("https://").rsplit(":", 1)
    ctx = c.client_ssl()
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def test_a_rotated_certificate_reaches_the_next_handshake(secure: tuple[TLSCluster, str]) -> None:
    c, ep = secure
    member = c.members[0]
    fresh = c.client_ca.issue("rotated")
    assert _served_serial(c, ep) != fresh.serial
    member.server.put(c.client_ca.pem, fresh)
    wait_for("the rotated certificate", lambda: _served_serial(c, ep) == fresh.serial, 20)
