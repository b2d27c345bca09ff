"""End to end, locally: the operator renews the member certificates of a running RaftKV
under load, and no request fails.

A 3-member RaftKV with ``spec.tls: {duration: 2m}`` (client and peer TLS, managed CA):
the operator renews each certificate with a third of its lifetime left (80 s after
issue), by rewriting the Secret in place. The kubelet harness refreshes the mounted
Secret volumes as the real kubelet does (a new timestamped directory behind ``..data``,
swapped with one rename), and the members reload the files without a restart.

Meanwhile a load thread writes and reads over HTTPS, one member per connection, with a
new connection (a new full handshake) every few requests and no client-side retry, so
every failed request is seen. The test waits for both Secrets to be renewed, then for
every member to present the new certificates on its client port and on its peer port
(real TLS handshakes, compared with the Secrets' ``tls.crt``), keeps the load going for
a number of requests after that, and checks: not one request failed, every acknowledged
write is readable, ``status.tls.notAfter`` moved forward, the ``CertificateRenewed``
Events, and each member's ``raftkv_certificate_expiry_timestamp_seconds`` shows the new
expiries.

Two minutes is the shortest duration that leaves room: the cluster must be in sync, and
the load running, before the renewal at two thirds (80 s), and the members reload
within two ``--tls-reload-interval``s (5 s each by default) of the kubelet's refresh,
long before the old certificates expire. Opt-in like the rest of ``e2e/``.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import re
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from kubelet import write_secret_volume
from test_operator_e2e import NAME, STEP_TIMEOUT, TRANSIENT, World, world
from test_tls_e2e import TLSWorld

from raftkv.client import Client, RaftKVError
from raftkv.tls import CertFiles, CertReloader, Poll, check_cert, client_ssl_context, server_context
from raftkv_operator import tls
from support.operator_harness import NS
from support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
log = logging.getLogger("e2e")
__all__ = ["world"]  # the fixture, shared with test_operator_e2e

DURATION = "2m"
REPLICAS = 3
#: Requests per connection: each new connection is a new handshake with the member.
PER_CONNECTION = 4
#: Requests the load makes after every member presents the new certificates.
AFTER = 80
EXPIRY = re.compile(
    r'^raftkv_certificate_expiry_timestamp_seconds\{kind="(server|peer)"\} (\S+)$', re.M
)


class TLSLoad:
    """Writes ``k000001``, ``k000002``, ... and reads each back (linearizable), over
    HTTPS trusting only the cluster CA. Each connection goes to one member (taken in
    turn) with no retry and no other endpoint to fall back on, so a request that fails
    at any member is counted, never hidden."""

    def __init__(self, urls: list[str], ca_file: Path) -> None:
        self.urls = urls
        self.ca_file = ca_file
        self.acked: dict[str, bytes] = {}
        self.failures = 0
        #: What failed, with when (Unix time).
        self.failed: list[tuple[float, str]] = []
        self.requests = 0
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-load", daemon=True)

    def __enter__(self) -> TLSLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()

    def _fail(self, what: str) -> None:
        self.failures += 1
        self.failed.append((dt.datetime.now(dt.UTC).timestamp(), what))

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            url = self.urls[self.connections % len(self.urls)]
            self.connections += 1
            # A fresh context too: no TLS session to resume, a full handshake each time.
            context = client_ssl_context(self.ca_file)
            with Client([url], timeout=5, retries=0, verify=context) as client:
                for _ in range(PER_CONNECTION):
                    if self._stop.is_set():
                        break
                    i += 1
                    key, value = f"k{i:06d}", f"v{i}".encode()
                    try:
                        client.put(key, value)
                        self.acked[key] = value
                        got = client.get(key)
                        if got is None or got.value != value:
                            self._fail(f"{url}: read {key} back as {got!r}")
                    except (RaftKVError, httpx.HTTPError, ssl.SSLError, OSError) as exc:
                        self._fail(f"{url}: {key}: {exc!r}")
                    self.requests += 2


def _cert_of(secret: Any) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret.data["tls.crt"]))


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def presented(
    url: str, ca_file: Path, identity: tuple[Path, Path] | None = None
) -> x509.Certificate:
    """The certificate a member presents at ``url``, by a real handshake that checks it
    against ``ca_file`` and the host; ``identity`` is the client pair a mutual-TLS
    port (the peer port) asks for."""
    host, port = _host_port(url)
    context = ssl.create_default_context(cafile=str(ca_file))
    if identity is not None:
        context.load_cert_chain(str(identity[0]), str(identity[1]))
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def expiries(url: str, context: ssl.SSLContext) -> dict[str, float]:
    """``raftkv_certificate_expiry_timestamp_seconds`` of a member, by ``kind``."""
    text = httpx.get(url + "/metrics", verify=context, timeout=5).text
    return {kind: float(value) for kind, value in EXPIRY.findall(text)}


def test_certificates_rotate_under_load_without_a_failed_request(
    world: World, tmp_path: Path
) -> None:
    world.create_raftkv(replicas=REPLICAS, tls={"duration": DURATION})

    def secret(name: str) -> Any:
        return world.core.read_namespaced_secret(name, NS)

    server_name, peer_name = tls.server_secret(NAME), tls.peer_tls_secret(NAME)
    ca = wait_for(
        "the cluster CA",
        lambda: secret(tls.ca_secret(NAME)),
        timeout=STEP_TIMEOUT,
        ignore=TRANSIENT,
    )
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(base64.b64decode(ca.data["tls.crt"]))
    ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
    secured = TLSWorld(world, ca_file)
    status = secured.wait_in_sync(REPLICAS)
    first_not_after = dt.datetime.fromisoformat(status["tls"]["notAfter"])
    client_urls = secured.client_urls[:REPLICAS]
    peer_urls = [
        "https://" + world.addressing.peer_url(NAME, NS, k).split("://", 1)[1]
        for k in range(REPLICAS)
    ]

    with TLSLoad(client_urls, ca_file) as load:
        # Taken with the load running: the renewal the test waits for comes after.
        old = {s: _cert_of(secret(s)).serial_number for s in (server_name, peer_name)}
        wait_for("the load under way", lambda: load.requests >= 20 or None, timeout=STEP_TIMEOUT)

        def renewed() -> dict[str, x509.Certificate] | None:
            certs = {s: _cert_of(secret(s)) for s in (server_name, peer_name)}
            if any(c.serial_number == old[s] for s, c in certs.items()):
                return None
            return certs

        # Two thirds of two minutes after issue, at most: a deadline, not a wait.
        new = wait_for("both Secrets renewed", renewed, timeout=240, ignore=TRANSIENT)
        for cert in new.values():
            cert.verify_directly_issued_by(ca_cert)

        def everyone_presents_the_new_certificates() -> bool | None:
            server_cert = _cert_of(secret(server_name))
            peer_secret = secret(peer_name)
            peer_cert = _cert_of(peer_secret)
            # The peer port is mutual TLS: present the (current) peer pair.
            crt, key = tmp_path / "peer.crt", tmp_path / "peer.key"
            crt.write_bytes(base64.b64decode(peer_secret.data["tls.crt"]))
            key.touch(mode=0o600)
            key.write_bytes(base64.b64decode(peer_secret.data["tls.key"]))
            for url in client_urls:
                if presented(url, ca_file).serial_number != server_cert.serial_number:
                    return None
            for url in peer_urls:
                if presented(url, ca_file, (crt, key)).serial_number != peer_cert.serial_number:
                    return None
            return True

        wait_for(
            "every member presenting the new certificates on both ports",
            everyone_presents_the_new_certificates,
            timeout=STEP_TIMEOUT,
            interval=0.5,
            ignore=(*TRANSIENT, ssl.SSLError),
        )
        reloaded_at = load.requests
        wait_for(
            f"{AFTER} more requests after the reload",
            lambda: load.requests >= reloaded_at + AFTER or None,
            timeout=STEP_TIMEOUT,
        )

    log.info(
        "rotation under load: %d requests over %d connections, %d failed",
        load.requests,
        load.connections,
        load.failures,
    )
    assert load.failed == [], f"{load.failures} requests failed: {load.failed[:5]}"
    assert load.connections > 3 * REPLICAS, load.connections
    secured.assert_kept(load)

    # The certificates each member uses now are the Secrets' (they may have been
    # renewed once more meanwhile only after another 80 s; the test is over by then).
    server_cert, peer_cert = (_cert_of(secret(s)) for s in (server_name, peer_name))
    context = client_ssl_context(ca_file)
    for url in client_urls:

        def metric(url: str = url) -> dict[str, float] | None:
            return expiries(url, context) or None

        got = wait_for(
            f"the expiry metric of {url}", metric, timeout=STEP_TIMEOUT, ignore=TRANSIENT
        )
        assert got == {
            "server": server_cert.not_valid_after_utc.timestamp(),
            "peer": peer_cert.not_valid_after_utc.timestamp(),
        }, url

    def moved() -> dt.datetime | None:
        raw = ((world.raftkv().get("status") or {}).get("tls") or {}).get("notAfter")
        when = dt.datetime.fromisoformat(raw) if raw else None
        return when if when is not None and when > first_not_after else None

    now_after = wait_for("status.tls.notAfter moved", moved, timeout=STEP_TIMEOUT)
    assert now_after == min(server_cert.not_valid_after_utc, peer_cert.not_valid_after_utc), (
        now_after
    )

    uid = world.raftkv()["metadata"]["uid"]
    renewals = [
        str(e.message)
        for e in world.core.list_namespaced_event(NS).items
        if e.involved_object.uid == uid and e.reason == "CertificateRenewed"
    ]
    assert any(m.startswith(f"{server_name}: renewed") for m in renewals), renewals
    assert any(m.startswith(f"{peer_name}: renewed") for m in renewals), renewals
    # Not on every pass (the backdating bug): one renewal per Secret so far.
    assert len(renewals) == 2, renewals
    assert all("two thirds" in m for m in renewals), renewals
    # No member restarted for the renewal.
    assert all(world.kubelet.procs[f"{NAME}-{k}"].restarts == 0 for k in range(REPLICAS))


def test_the_kubelet_swaps_secret_volumes_atomically_and_a_member_reloads_them(
    tmp_path: Path,
) -> None:
    """The harness's volume layout is the kubelet's (``key -> ..data/key``, ``..data``
    a symlink to a timestamped directory, swapped by one rename, the old directory
    removed), and the member's reloader, which resolves the paths, picks up the swap
    after its settling look and presents the new certificate."""
    now = dt.datetime.now(dt.UTC).timestamp()
    ca = tls.new_ca(NAME, now)
    sans = ["localhost"]
    first, second = (tls.issue(ca, "kv-server-tls", sans, now, 3600.0) for _ in range(2))
    volume = tmp_path / "server-tls"

    def payload(pair: tls.KeyPair) -> dict[str, bytes]:
        return {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem, "ca.crt": ca.cert_pem}

    write_secret_volume(volume, {**payload(first), "extra": b"gone after the update"})
    data = os.readlink(volume / "..data")
    assert data.startswith("..")
    assert (volume / data).is_dir()
    for key in ("tls.crt", "tls.key", "ca.crt", "extra"):
        assert os.readlink(volume / key) == f"..data/{key}"
    assert (volume / "tls.crt").read_bytes() == first.cert_pem

    files = CertFiles(volume / "tls.crt", volume / "tls.key", volume / "ca.crt")
    loaded = check_cert(files)
    context = server_context(loaded, None)
    reloader = CertReloader("server", loaded, [context])
    assert reloader.poll() is Poll.UNCHANGED

    write_secret_volume(volume, payload(second))
    assert os.readlink(volume / "..data") != data
    assert not (volume / data).exists(), "the old payload directory is removed"
    assert not (volume / "extra").exists(), "a key gone from the Secret is gone"
    assert sorted(p.name for p in volume.iterdir() if not p.name.startswith("..")) == [
        "ca.crt",
        "tls.crt",
        "tls.key",
    ]
    assert reloader.poll() is Poll.SETTLING
    assert reloader.poll() is Poll.RELOADED
    serial = x509.load_pem_x509_certificate(second.cert_pem).serial_number
    assert reloader.current.serial == serial
    # The same bytes written again: a new directory, nothing to reload.
    write_secret_volume(volume, payload(second))
    assert reloader.poll() is Poll.SETTLING
    assert reloader.poll() is Poll.UNCHANGED
