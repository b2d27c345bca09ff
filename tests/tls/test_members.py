"""Members with TLS on both ports, as real processes: who gets in and who does not,
and what the CLI needs to talk to them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from raftkv.client import AsyncClient
from raftkv.tls import CertFiles, check_cert, client_context
from support.wait import wait_for

from .handshake import peer_port_accepts, tcp_handshake
from .members import TLSCluster
from .pki import CA, SecretDir


def test_three_tls_members_elect_and_replicate(cluster: TLSCluster) -> None:
    with cluster.client() as cl:
        written = cl.put("replicated", b"over mTLS")
    for m in cluster.members:
        with cluster.client() as cl:
            cl.endpoints = [m.url]

            def seen(cl: object = cl) -> bool:
                got = cl.get("replicated", consistency="serializable")  # type: ignore[attr-defined]
                return got is not None and got.revision == written.revision

            wait_for(f"{m.name} applied the write", seen, 10)


def test_plain_http_is_refused_on_the_client_port(cluster: TLSCluster) -> None:
    m = cluster.members[0]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{m.client_port}/healthz", timeout=3)


def test_a_client_that_does_not_trust_the_ca_is_refused(cluster: TLSCluster) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(cluster.members[0].url + "/healthz", timeout=3)


def test_client_cert_auth_refuses_a_client_without_a_certificate(cluster: TLSCluster) -> None:
    m = cluster.members[0]
    with (
        httpx.Client(verify=cluster.client_ssl(with_cert=False), timeout=3) as h,
        pytest.raises(httpx.TransportError),
    ):
        h.get(m.url + "/healthz")
    assert cluster.get(m, "/healthz").status_code == 200


def test_client_cert_auth_refuses_a_certificate_of_another_ca(cluster: TLSCluster) -> None:
    stranger = CA("stranger")
    root = cluster.root / "stranger"
    d = SecretDir(root, stranger, stranger.issue())
    ctx = client_context(cluster.client_ca.pem, check_cert(CertFiles(d.cert, d.key)))
    with httpx.Client(verify=ctx, timeout=3) as h, pytest.raises(httpx.TransportError):
        h.get(cluster.members[0].url + "/healthz")


def test_the_peer_port_is_mutual_tls(cluster: TLSCluster) -> None:
    port = cluster.members[0].peer_port
    own = cluster.members[1].peer
    member = client_context(cluster.peer_ca.pem, check_cert(CertFiles(own.cert, own.key)))
    assert peer_port_accepts(port, member)
    # No certificate, or one from another CA: refused before any HTTP.
    assert not peer_port_accepts(port, client_context(cluster.peer_ca.pem))
    other = CA("other peer CA")
    d = SecretDir(cluster.root / "other-peer", other, other.issue())
    stranger = client_context(cluster.peer_ca.pem, check_cert(CertFiles(d.cert, d.key)))
    assert not peer_port_accepts(port, stranger)
    # And the member presents its peer certificate, signed by the peer CA.
    target = cluster.members[0].peer
    assert tcp_handshake(port, member) == check_cert(CertFiles(target.cert, target.key)).serial


def test_expiry_gauges_are_exported_per_certificate(cluster: TLSCluster) -> None:
    m = cluster.members[0]
    for kind, d in (("server", m.server), ("peer", m.peer)):
        loaded = check_cert(CertFiles(d.cert, d.key))
        got = cluster.metric(m, "raftkv_certificate_expiry_timestamp_seconds", kind)
        assert got == loaded.not_after.timestamp()
        assert cluster.metric(m, "raftkv_certificate_reload_failures_total", kind) == 0


def _cli(
    cluster: TLSCluster, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    endpoints = ",".join(m.url for m in cluster.members)
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli", *args, "--endpoints", endpoints],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_the_cli_speaks_tls_with_flags_or_variables(cluster: TLSCluster) -> None:
    d = cluster.client_dir
    flags = ["--cacert", str(d.ca), "--cert", str(d.cert), "--key", str(d.key)]
    put = _cli(cluster, "put", "cli-key", "cli-value", *flags)
    assert put.returncode == 0, put.stderr
    env = {"RAFTKV_CACERT": str(d.ca), "RAFTKV_CERT": str(d.cert), "RAFTKV_KEY": str(d.key)}
    get = _cli(cluster, "get", "cli-key", env=env)
    assert get.returncode == 0, get.stderr
    assert "cli-value" in get.stdout
    # Global, as etcdctl has them: before the command.
    global_flags = _cli(cluster, *flags, "get", "cli-key")
    assert global_flags.returncode == 0, global_flags.stderr
    assert "cli-value" in global_flags.stdout
    status = _cli(cluster, "status", *flags)
    assert status.returncode == 0, status.stdout + status.stderr
    # Without a client certificate every member refuses.
    refused = _cli(cluster, "get", "cli-key", "--cacert", str(d.ca), "--timeout", "3")
    assert refused.returncode != 0
    # A CA file that does not exist is named, without a traceback.
    missing = _cli(cluster, "get", "cli-key", "--cacert", str(d.root / "nope.crt"))
    assert missing.returncode != 0
    assert f"{d.root / 'nope.crt'}: CA file does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_the_async_client_takes_ca_cert_and_key_files(cluster: TLSCluster) -> None:
    d = cluster.client_dir

    async def roundtrip() -> bytes | None:
        urls = [m.url for m in cluster.members]
        async with AsyncClient(urls, cacert=d.ca, cert=d.cert, key=d.key) as cl:
            await cl.put("async-key", b"async")
            got = await cl.get("async-key")
        return None if got is None else got.value

    assert asyncio.run(roundtrip()) == b"async"


def test_verify_runs_against_a_tls_cluster(cluster: TLSCluster, tmp_path: Path) -> None:
    d = cluster.client_dir
    flags = ["--cacert", str(d.ca), "--cert", str(d.cert), "--key", str(d.key)]
    run = _cli(
        cluster, "verify", "--duration", "2s", "--rate", "20", "--out", str(tmp_path / "v"), *flags
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "verdict: OK" in run.stdout
