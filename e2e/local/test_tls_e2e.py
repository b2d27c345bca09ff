"""End to end, locally: a RaftKV with TLS on from the start (``spec.tls: {}``).

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
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from test_operator_e2e import NAME, STEP_TIMEOUT, TRANSIENT, World, world

from raftkv.client import Client, Member
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

    def _client(self) -> Client:
        return Client(self.client_urls, timeout=2, retries=1, verify=self.verify)

    def members(self) -> list[Member]:
        with self._client() as client:
            return client.members()

    def leader(self) -> int:
        with self._client() as client:
            return client.status().leader


def test_tls_from_the_start(world: World, tmp_path: Path) -> None:
    world.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaftKV",
            "metadata": {"name": NAME},
            "spec": {
                "replicas": 3,
                "raft": {"tickMs": 50, "electionTicks": 10, "heartbeatTicks": 1},
                "tls": {},
            },
        },
    )

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
