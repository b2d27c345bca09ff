"""End to end, locally: a RaftKV with TLS on from the start (``spec.tls: {}``), and one
with TLS turned on later under continuous writes (the three-roll transition of
``tls_transition.py``; every acknowledged write present at the end).

The real operator issues its CA and the member certificates into Secrets; the
kubelet harness writes the Secret volumes to files and starts real ``raftkv serve``
processes with the TLS flags of the pod template, so the members talk mutual TLS to
each other (three voters only come about over the peer port) and serve the client
API over HTTPS only. The operator itself reaches them with the CA from the Secret.
At the end: writes and reads over HTTPS with the cluster CA, the certificate a member
presents is the one in the Secret (signed by the CA, naming the pods and 127.0.0.1),
plain HTTP gets no answer, and the status says ``CertificatesReady``.

Opt-in like the rest of ``e2e/`` (``pytest e2e/local``).
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from test_operator_e2e import NAME, STEP_TIMEOUT, TRANSIENT, World, world

from raftkv.client import Client, RaftKVError
from raftkv.tls import client_ssl_context
from raftkv_operator import tls
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from support.operator_harness import NS
from support.wait import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
__all__ = ["world"]  # the fixture, shared with test_operator_e2e


class TLSWorld(World):
    """:class:`World` whose member calls go over HTTPS, trusting the cluster CA."""

    def __init__(self, base: World, ca_file: Path) -> None:
        super().__init__(base.api, base.kubelet, base.addressing)
        self.client_urls = ["https://" + u.split("://", 1)[1] for u in base.client_urls]
        self.verify = client_ssl_context(ca_file)

    def _client(self, timeout: float = 2, retries: int = 1) -> Client:
        return Client(self.client_urls, timeout=timeout, retries=retries, verify=self.verify)


def test_tls_from_the_start(world: World, tmp_path: Path) -> None:
    world.create_raftkv(tls={})

    def ca_secret() -> Any:
        return world.core.read_namespaced_secret(tls.ca_secret(NAME), NS)

    ca = wait_for("the cluster CA", ca_secret, timeout=STEP_TIMEOUT, ignore=TRANSIENT)
    ca_pem = base64.b64decode(ca.data["tls.crt"])
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca_pem)
    secured = TLSWorld(world, ca_file)
    status = secured.wait_in_sync(3)

    cond = {c["type"]: c for c in status["conditions"]}[tls.CERTIFICATES_READY]
    assert (cond["status"], cond["reason"]) == ("True", "CertificatesIssued")
    assert status["tls"]["notAfter"]
    assert all(m["peerURL"].startswith("https://") for m in status["members"])

    # Writes and reads over HTTPS, trusting only the cluster CA.
    with Client(secured.client_urls, timeout=5, retries=2, verify=secured.verify) as client:
        for i in range(20):
            client.put(f"t{i:02d}", f"v{i}".encode())
        stored = {kv.key: kv.value for kv in client.list("t", limit=100)}
    assert stored == {f"t{i:02d}": f"v{i}".encode() for i in range(20)}

    # The certificate a member presents: the Secret's, signed by the CA, naming the pods.
    url = secured.client_urls[0].split("://", 1)[1]
    host, port = url.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    presented = x509.load_der_x509_certificate(der)
    presented.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    san = presented.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{NAME}-2.{NAME}-peer.{NS}.svc" in san.get_values_for_type(x509.DNSName)

    # Plain HTTP gets no answer on the client port.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{url}/readyz", timeout=2)
    for pod in ("kv-0", "kv-1", "kv-2"):
        env = world.kubelet.procs[pod].env
        assert env["RAFTKV_ADVERTISE_PEER_URL"].startswith("https://")
        assert Path(env["RAFTKV_PEER_CERT_FILE"]).is_file()


class EitherWriter:
    """Writes k000001, k000002, ... as fast as the cluster acknowledges them, over
    whichever scheme answers: plain before the TLS transition, either during it
    (accept-plain), HTTPS trusting the cluster CA once it is known and after it."""

    def __init__(self, plain_urls: list[str]) -> None:
        self.plain_urls = plain_urls
        self.ca_file: Path | None = None
        self.acked: dict[str, bytes] = {}
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> EitherWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()

    def _client(self, attempt: int) -> Client:
        k = attempt % len(self.plain_urls)
        order = self.plain_urls[k:] + self.plain_urls[:k]
        if self.ca_file is not None and attempt % 2:
            https = ["https://" + u.split("://", 1)[1] for u in order]
            return Client(https, timeout=3, retries=1, verify=client_ssl_context(self.ca_file))
        return Client(order, timeout=3, retries=1, backoff=0.05)

    def _run(self) -> None:
        i, attempt = 0, 0
        client = self._client(attempt)
        try:
            while not self._stop.is_set():
                i += 1
                key, value = f"k{i:06d}", f"v{i}".encode()
                try:
                    client.put(key, value)
                    self.acked[key] = value
                except (RaftKVError, httpx.HTTPError, ssl.SSLError, OSError):
                    # The scheme may have changed under us: try the next endpoint and
                    # the other scheme.
                    self.failures += 1
                    attempt += 1
                    client.close()
                    client = self._client(attempt)
                    time.sleep(0.05)
                time.sleep(0.02)
        finally:
            client.close()


def test_tls_turned_on_later_under_writes(world: World, tmp_path: Path) -> None:
    """A plain RaftKV gets ``spec.tls`` while a writer keeps writing: the operator runs
    the three rolls (every member process restarted three times, never two down at
    once), the members end on TLS only, and every acknowledged write is there."""
    world.create_raftkv(upgrade={"stabilizationSeconds": 1, "timeoutSeconds": 90})
    world.wait_in_sync(3)
    pods = ("kv-0", "kv-1", "kv-2")
    pids: dict[str, set[int | None]] = {pod: {world.kubelet.pid(pod)} for pod in pods}
    phases: list[str] = []
    fewest = 3

    def look() -> dict[str, Any] | None:
        nonlocal fewest
        alive = 0
        for pod in pods:
            pid = world.kubelet.pid(pod)
            alive += pid is not None
            pids[pod].add(pid)
        fewest = min(fewest, alive)
        status = world.raftkv().get("status") or {}
        record = (status.get("tls") or {}).get("transition")
        if record:
            if not phases or phases[-1] != record["phase"]:
                phases.append(record["phase"])
            return None
        if not phases:
            return None
        env = world.kubelet.procs["kv-0"].env
        if "RAFTKV_PEER_ACCEPT_PLAIN" in env or not env["RAFTKV_ADVERTISE_PEER_URL"].startswith(
            "https://"
        ):
            return None
        return status

    with EitherWriter(world.client_urls) as writer:
        time.sleep(0.5)  # some writes before the change, too
        world.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, NAME, {"spec": {"tls": {"mode": "managed"}}}
        )

        def ca_secret() -> Any:
            return world.core.read_namespaced_secret(tls.ca_secret(NAME), NS)

        ca = wait_for("the cluster CA", ca_secret, timeout=STEP_TIMEOUT, ignore=TRANSIENT)
        ca_file = tmp_path / "ca.crt"
        ca_file.write_bytes(base64.b64decode(ca.data["tls.crt"]))
        writer.ca_file = ca_file
        wait_for(
            "the TLS transition", look, timeout=4 * STEP_TIMEOUT, interval=0.1, ignore=TRANSIENT
        )
        secured = TLSWorld(world, ca_file)
        status = secured.wait_in_sync(3)
        time.sleep(0.5)  # a few more writes against the TLS members

    assert phases == ["AcceptBoth", "Advertise", "Final"], phases
    assert all(m["peerURL"].startswith("https://") for m in status["members"])
    for pod in pods:
        # the first process, one per phase (a None: between stop and start)
        assert len(pids[pod] - {None}) == 4, (pod, pids[pod])
    reasons = world.event_reasons()
    assert reasons.count("MemberPodDeleted") == 9, reasons
    assert "TLSTransitionDone" in reasons
    # Plain HTTP gets no answer any more.
    url = secured.client_urls[0].split("://", 1)[1]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{url}/readyz", timeout=2)

    secured.assert_kept(writer)
