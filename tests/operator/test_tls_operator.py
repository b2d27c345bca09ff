"""spec.tls through the real operator against the Kubernetes API stand-in.

The operator runs as ``raftkv operator`` does (kopf in a thread); the StatefulSet
controller and kubelet are played by ``test_rolling_operator.Controller`` (pods made
from the current template, members in :class:`RollingMembers`); objects are validated
against the Kubernetes schemas, the RaftKV CRD and, for ``Certificate`` objects,
cert-manager's own v1 CRD schema (``support/certmanager_crd.yaml``). Certificates are
parsed back with ``cryptography``.

- managed: the CA and both Secrets are made with the right SANs, status has
  ``CertificatesReady`` and ``tls.notAfter``; a certificate due for renewal is rewritten
  in place and no pod is touched; turning peer TLS off on the running cluster is not
  applied (condition says why) and rolls nothing.
- certManager without cert-manager: ``CertManagerMissing``, no StatefulSet, no pod.
- certManager with its CRD: valid Certificates; no pod until cert-manager filled the
  Secrets; then the members start and the condition turns True.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kubernetes
import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from kubernetes.client import ApiClient, ApiException
from test_rolling_operator import Controller, RollingMembers, plain

from raftkv_operator import tls
from raftkv_operator.naming import GROUP, PLURAL, VERSION
from support.crd_schema import load_crd
from support.fake_members import CONFIG
from support.kube_emulator import EmulatorThread, KubeEmulator
from support.operator_harness import NS, OperatorThread, crd_schema
from support.structural import check_crd
from support.wait import wait_for

K8S_VERSION = "1.30"
TIMEOUT = 240.0  # a deadline for each wait, not a duration
DAY = 86400.0
CERTMANAGER_CRD = Path(__file__).parents[1] / "support" / "certmanager_crd.yaml"


def emulator(with_cert_manager: bool) -> EmulatorThread:
    emu = KubeEmulator()
    emu.register_crd(load_crd(), crd_schema, check_crd)
    if with_cert_manager:
        emu.register_crd(yaml.safe_load(CERTMANAGER_CRD.read_text()), crd_schema, check_crd)
    return EmulatorThread(emu)


@pytest.fixture
def server() -> Iterator[EmulatorThread]:
    with emulator(with_cert_manager=False) as running:
        yield running
        assert not running.emulator.errors, running.emulator.errors


@pytest.fixture
def cm_server() -> Iterator[EmulatorThread]:
    with emulator(with_cert_manager=True) as running:
        yield running
        assert not running.emulator.errors, running.emulator.errors


class Api:
    def __init__(self, url: str) -> None:
        self.client = ApiClient(kubernetes.client.Configuration(host=url))
        self.core: Any = kubernetes.client.CoreV1Api(self.client)
        self.apps: Any = kubernetes.client.AppsV1Api(self.client)
        self.custom: Any = kubernetes.client.CustomObjectsApi(self.client)

    def rkv(self) -> dict[str, Any]:
        return cast(
            "dict[str, Any]",
            self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "kv"),
        )

    def status(self) -> dict[str, Any]:
        return dict(self.rkv().get("status") or {})

    def secret(self, name: str) -> dict[str, Any] | None:
        try:
            return plain(self.client, self.core.read_namespaced_secret(name, NS))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, spec_tls: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaftKV",
            "metadata": {"name": "kv"},
            "spec": {
                "replicas": 3,
                "image": "raftkv:1",
                "upgrade": {"stabilizationSeconds": 0, "timeoutSeconds": 20},
                "tls": spec_tls,
            },
        }
        return cast(
            "dict[str, Any]",
            self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body),
        )

    def events(self, uid: str) -> list[tuple[str | None, str | None]]:
        return [
            (e.reason, e.type)
            for e in self.core.list_namespaced_event(NS).items
            if e.involved_object.uid == uid
        ]

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    found = [c for c in status.get("conditions") or [] if c["type"] == kind]
    return dict(found[0]) if found else None


def cert_of(secret: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))


def sans_of(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {
        str(i) for i in san.get_values_for_type(x509.IPAddress)
    }


def settled(api: Api) -> dict[str, Any] | None:
    """3 Ready pods and a report that says so, certificates included."""
    s = api.status()
    ready = condition(s, "Ready")
    certs = condition(s, tls.CERTIFICATES_READY)
    pods = api.core.list_namespaced_pod(NS).items
    ok = (
        len(pods) == 3
        and ready is not None
        and ready["status"] == "True"
        and certs is not None
        and certs["status"] == "True"
    )
    return s if ok else None


def test_managed_tls_issue_and_renew_in_place(server: EmulatorThread) -> None:
    api = Api(server.url)
    members = RollingMembers()
    try:
        with (
            OperatorThread(server.url, CONFIG, probe=members, admin_for=lambda _: members),
            Controller(api.client, members) as controller,
        ):
            uid = api.create({"mode": "managed"})["metadata"]["uid"]
            first = wait_for("3 members with TLS", lambda: settled(api), timeout=TIMEOUT)

            # --- the CA and the member certificates
            ca_secret = api.secret("kv-ca")
            assert ca_secret is not None
            assert ca_secret["type"] == "kubernetes.io/tls"
            ca = cert_of(ca_secret)
            assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            for name in ("kv-server-tls", "kv-peer-tls"):
                secret = api.secret(name)
                assert secret is not None
                assert secret["type"] == "kubernetes.io/tls"
                assert base64.b64decode(secret["data"]["ca.crt"]) == base64.b64decode(
                    ca_secret["data"]["tls.crt"]
                )
                cert = cert_of(secret)
                cert.verify_directly_issued_by(ca)
                names = sans_of(cert)
                for k in range(3):
                    assert f"kv-{k}.kv-peer.{NS}.svc" in names
                    assert f"kv-{k}.kv-peer.{NS}.svc.cluster.local" in names
                assert {"kv-client", "kv-peer", "localhost", "127.0.0.1"} <= names
                owner = secret["metadata"]["ownerReferences"][0]
                assert (owner["kind"], owner["uid"]) == ("RaftKV", uid)

            # --- status: the condition and the soonest expiry
            assert first["tls"]["mode"] == "managed"
            not_after = dt.datetime.fromisoformat(first["tls"]["notAfter"])
            server_cert = cert_of(cast("dict[str, Any]", api.secret("kv-server-tls")))
            assert abs(not_after.timestamp() - server_cert.not_valid_after_utc.timestamp()) < 2
            assert condition(first, tls.CERTIFICATES_READY)["reason"] == "CertificatesIssued"  # type: ignore[index]

            # --- the pods mount it and speak https
            sts = plain(api.client, api.apps.read_namespaced_stateful_set("kv", NS))
            kubernetes_validate.validate(sts, K8S_VERSION, strict=True)
            template = sts["spec"]["template"]
            assert template["metadata"]["labels"][tls.TLS_LABEL] == "client-peer"
            env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
            assert env["RAFTKV_ADVERTISE_PEER_URL"].startswith("https://")
            assert env["RAFTKV_PEER_CERT_FILE"] == "/etc/raftkv/peer/tls.crt"
            pods_before = {
                p.metadata.name: p.metadata.uid for p in api.core.list_namespaced_pod(NS).items
            }
            assert controller.recreated == []

            # --- renewal: a certificate past two thirds of its lifetime is rewritten
            # in place, and no pod is touched (the members reload the mounted files).
            ca_pair = tls.KeyPair(
                base64.b64decode(ca_secret["data"]["tls.crt"]),
                base64.b64decode(ca_secret["data"]["tls.key"]),
            )
            now = dt.datetime.now(dt.UTC).timestamp()
            old = tls.issue(ca_pair, "old", tls.dns_names("kv", NS, 3), now - 61 * DAY, 90 * DAY)
            aged = tls.tls_secret_object(
                "kv", NS, "kv-server-tls", "server-tls", old, ca_pair.cert_pem
            )
            api.core.replace_namespaced_secret("kv-server-tls", NS, aged)
            old_serial = x509.load_pem_x509_certificate(old.cert_pem).serial_number

            def renewed() -> x509.Certificate | None:
                secret = api.secret("kv-server-tls")
                assert secret is not None
                cert = cert_of(secret)
                return cert if cert.serial_number != old_serial else None

            fresh = wait_for("the renewal", renewed, timeout=TIMEOUT)
            fresh.verify_directly_issued_by(ca)
            assert fresh.not_valid_before_utc.timestamp() > now - DAY
            wait_for(
                "the CertificateRenewed Event",
                lambda: ("CertificateRenewed", "Normal") in api.events(uid) or None,
                timeout=TIMEOUT,
            )
            pods_after = {
                p.metadata.name: p.metadata.uid for p in api.core.list_namespaced_pod(NS).items
            }
            assert pods_after == pods_before, "a renewal restarts no member"
            assert controller.recreated == []

            assert not controller.errors, controller.errors
    finally:
        api.close()


def test_cert_manager_missing_touches_nothing(server: EmulatorThread) -> None:
    api = Api(server.url)
    members = RollingMembers()
    try:
        with OperatorThread(server.url, CONFIG, probe=members, admin_for=lambda _: members):
            uid = api.create(
                {"mode": "certManager", "certManager": {"issuerRef": {"name": "ca-issuer"}}}
            )["metadata"]["uid"]

            def missing() -> dict[str, Any] | None:
                s = api.status()
                c = condition(s, tls.CERTIFICATES_READY)
                return s if c is not None and c["reason"] == "CertManagerMissing" else None

            s = wait_for("CertManagerMissing", missing, timeout=TIMEOUT)
            assert condition(s, tls.CERTIFICATES_READY)["status"] == "False"  # type: ignore[index]
            assert condition(s, "Progressing")["reason"] == "CertificatesNotReady"  # type: ignore[index]
            wait_for(
                "the Warning Event",
                lambda: ("CertManagerMissing", "Warning") in api.events(uid) or None,
                timeout=TIMEOUT,
            )
            with pytest.raises(ApiException) as err:
                api.apps.read_namespaced_stateful_set("kv", NS)
            assert err.value.status == 404
            assert api.core.list_namespaced_pod(NS).items == []
            events = api.events(uid)
            assert events.count(("CertManagerMissing", "Warning")) == 1, "once, not per pass"
    finally:
        api.close()


def test_cert_manager_certificates_then_members(cm_server: EmulatorThread) -> None:
    api = Api(cm_server.url)
    members = RollingMembers()
    try:
        with (
            OperatorThread(cm_server.url, CONFIG, probe=members, admin_for=lambda _: members),
            Controller(api.client, members),
        ):
            api.create(
                {
                    "mode": "certManager",
                    "duration": "720h",
                    "certManager": {"issuerRef": {"name": "ca", "kind": "ClusterIssuer"}},
                }
            )

            def certificates() -> list[dict[str, Any]] | None:
                found = api.custom.list_namespaced_custom_object(
                    "cert-manager.io", "v1", NS, "certificates"
                )["items"]
                return found if len(found) == 2 else None

            certs = {
                c["metadata"]["name"]: c
                for c in wait_for("two Certificates", certificates, timeout=TIMEOUT)
            }
            assert set(certs) == {"kv-server", "kv-peer"}
            for name, secret in (("kv-server", "kv-server-tls"), ("kv-peer", "kv-peer-tls")):
                spec = certs[name]["spec"]
                assert spec["secretName"] == secret
                assert spec["duration"] == "720h"
                assert spec["renewBefore"] == "240h"
                assert spec["issuerRef"] == {
                    "name": "ca",
                    "kind": "ClusterIssuer",
                    "group": "cert-manager.io",
                }
                assert {"server auth", "client auth"} <= set(spec["usages"])
                assert f"kv-2.kv-peer.{NS}.svc" in spec["dnsNames"]
                assert spec["ipAddresses"] == ["127.0.0.1"]
            # cert-manager has not issued yet: no member may start.
            with pytest.raises(ApiException):
                api.apps.read_namespaced_stateful_set("kv", NS)

            # --- play cert-manager: issue both Secrets from a CA
            now = dt.datetime.now(dt.UTC).timestamp()
            ca = tls.new_ca("test-issuer", now)
            for spec in (certs["kv-server"]["spec"], certs["kv-peer"]["spec"]):
                pair = tls.issue(ca, "x", spec["dnsNames"], now, 30 * DAY)
                obj = tls.tls_secret_object("kv", NS, spec["secretName"], "tls", pair, ca.cert_pem)
                api.core.create_namespaced_secret(NS, obj)

            s = wait_for(
                "3 members with cert-manager's certificates", lambda: settled(api), timeout=TIMEOUT
            )
            assert s["tls"]["mode"] == "certManager"
            assert s["tls"]["notAfter"]
            c = condition(s, tls.CERTIFICATES_READY)
            assert c is not None
            assert c["reason"] == "CertificatesIssued"
    finally:
        api.close()
