"""spec.tls, the pure parts: renewal timing, SANs, the transition rule, the planner's
"no pod touched while the certificates are missing", the pod template, the schema.

Tables first, then hypothesis properties. Certificates are real (issued with
``cryptography``) and parsed back, never mocked.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st
from planner_world import NOW, cluster

from raftkv_operator import objects as o
from raftkv_operator import tls
from raftkv_operator.model import (
    AddLearner,
    CreateChildren,
    DeletePod,
    GrowStatefulSet,
    Reason,
    UpdateRestart,
    UpdateStatefulSet,
    Wait,
)
from raftkv_operator.planner import plan
from support.crd_schema import ObjectSchema, errors, version_schema

DAY = 86400.0
CERTMANAGER_CRD = Path(__file__).parents[1] / "support" / "certmanager_crd.yaml"


# --------------------------------------------------------------------------- renewal


@pytest.mark.parametrize(
    ("now", "renew", "recheck"),
    [
        (0.0, False, 60 * DAY),  # fresh: look again at two thirds of 90 days
        (59 * DAY, False, 60 * DAY),
        (60 * DAY, True, 60 * DAY),  # exactly two thirds: renew
        (89 * DAY, True, 89 * DAY),
        (91 * DAY, True, 91 * DAY),  # expired: renew at once
    ],
)
def test_renewal_table(now: float, renew: bool, recheck: float) -> None:
    decision = tls.renewal(now, 0.0, 90 * DAY)
    assert (decision.renew, decision.recheck_at) == (renew, recheck)


def test_renewal_of_nonsense_lifetimes_and_clocks() -> None:
    assert tls.renewal(10.0, 100.0, 100.0).renew  # no lifetime
    assert tls.renewal(10.0, 200.0, 100.0).renew  # inverted
    assert tls.renewal(0.0, DAY, 90 * DAY).renew  # not valid yet by far: clock went back
    assert not tls.renewal(DAY - 60, DAY, 90 * DAY).renew  # within the backdating


@given(
    not_before=st.floats(0, 1e9),
    lifetime=st.floats(120, 400 * DAY),
    at=st.floats(0, 1),
)
def test_renewal_happens_at_two_thirds_and_never_leaves_an_expired_certificate(
    not_before: float, lifetime: float, at: float
) -> None:
    not_after = not_before + lifetime
    now = not_before + at * lifetime
    decision = tls.renewal(now, not_before, not_after)
    due = not_before + lifetime * 2 / 3
    assert decision.renew == (now >= due)
    if not decision.renew:
        # The next look is before expiry, with at least a third of the lifetime left.
        assert now <= decision.recheck_at <= not_after - lifetime / 3 + 1e-6 * lifetime
    # Renewing leaves the new certificate nowhere near the warning threshold.
    fresh = tls.renewal(now, now, now + lifetime)
    assert not fresh.renew
    assert not tls.expiring_soon(now, now, now + lifetime)


@given(lifetime=st.floats(120, 400 * DAY), left=st.floats(0, 1))
def test_expiry_warning_only_after_a_missed_renewal(lifetime: float, left: float) -> None:
    """A certificate that is renewed on time (a third of its lifetime left) never
    warns; the warning starts below min(7 days, a sixth of the lifetime)."""
    not_after = lifetime
    now = not_after - left * lifetime
    soon = tls.expiring_soon(now, 0.0, not_after)
    assert soon == (not_after - now < min(7 * DAY, lifetime / 6))
    if left >= 1 / 3:
        assert not soon


def test_condition_table() -> None:
    t = tls.TLSSpec()
    assert tls.condition_for(t, 0.0, None, None)[:2] == ("False", "CertificatesPending")
    assert tls.condition_for(t, 0.0, (0.0, 90 * DAY), None)[:2] == ("True", "CertificatesIssued")
    assert tls.condition_for(t, 88 * DAY, (0.0, 90 * DAY), None)[:2] == (
        "False",
        "CertificateExpiringSoon",
    )
    assert tls.condition_for(t, 91 * DAY, (0.0, 90 * DAY), None)[:2] == (
        "False",
        "CertificateExpired",
    )
    assert tls.condition_for(t, 0.0, (0.0, 90 * DAY), "why")[:2] == (
        "True",
        "TLSTransitionQueued",
    )


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"), [("2160h", 2160 * 3600.0), ("1h30m", 5400.0), ("90s", 90.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert tls.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", "1d", "-1h", "30s", "h"])
def test_bad_durations_are_refused_clearly(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        tls.parse_duration(text)


def test_renew_before_is_a_third_of_the_duration() -> None:
    assert tls.format_duration(tls.parse_duration("2160h") / 3) == "720h"
    assert tls.format_duration(tls.parse_duration("1h") / 3) == "20m"


# --------------------------------------------------------------------------- issuing


def test_issued_certificate_names_every_pod_and_service_and_chains_to_the_ca() -> None:
    ca = tls.new_ca("kv", NOW)
    sans = tls.dns_names("kv", "prod", 3)
    pair = tls.issue(ca, "kv-server-tls", sans, NOW, 90 * DAY)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    for k in range(3):
        assert f"kv-{k}.kv-peer.prod.svc" in names
        assert f"kv-{k}.kv-peer.prod.svc.cluster.local" in names
    assert {"kv-client", "kv-client.prod.svc", "kv-peer.prod.svc.cluster.local"} <= names
    assert "localhost" in names
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))
    info = tls.read_cert(pair.cert_pem, ca.cert_pem)
    assert info.signed_by_ca
    assert info.not_after - info.not_before == pytest.approx(
        90 * DAY + tls.BACKDATE.total_seconds()
    )


def _secret(pair: tls.KeyPair, ca: tls.KeyPair) -> dict[str, Any]:
    return tls.tls_secret_object("kv", "prod", "kv-server-tls", "server-tls", pair, ca.cert_pem)


def test_issue_reasons() -> None:
    ca, other = tls.new_ca("kv", NOW), tls.new_ca("kv", NOW)
    sans = tls.dns_names("kv", "prod", 3)
    good = tls.issue(ca, "x", sans, NOW, 90 * DAY)
    assert tls.issue_reason(NOW, _secret(good, ca), ca.cert_pem, sans) is None
    assert tls.issue_reason(NOW, None, ca.cert_pem, sans) == "the Secret does not exist"
    foreign = tls.issue(other, "x", sans, NOW, 90 * DAY)
    assert "not signed by the cluster CA" in str(
        tls.issue_reason(NOW, _secret(foreign, ca), ca.cert_pem, sans)
    )
    # Scaled up to 5: the certificate must name kv-3 and kv-4 too.
    grown = tls.dns_names("kv", "prod", 5)
    assert "kv-4.kv-peer.prod.svc" in str(
        tls.issue_reason(NOW, _secret(good, ca), ca.cert_pem, grown)
    )
    # Scaled down: the certificate still names everyone; no reissue.
    assert (
        tls.issue_reason(NOW, _secret(good, ca), ca.cert_pem, tls.dns_names("kv", "prod", 1))
        is None
    )
    assert "two thirds" in str(
        tls.issue_reason(NOW + 61 * DAY, _secret(good, ca), ca.cert_pem, sans)
    )
    garbage = _secret(good, ca)
    garbage["data"]["tls.crt"] = base64.b64encode(b"not a certificate").decode()
    assert "no readable certificate" in str(tls.issue_reason(NOW, garbage, ca.cert_pem, sans))


def test_missing_names_of_a_cert_manager_secret() -> None:
    ca = tls.new_ca("kv", NOW)
    pair = tls.issue(ca, "x", tls.dns_names("kv", "prod", 3), NOW, 90 * DAY)
    assert tls.missing_names(_secret(pair, ca), tls.dns_names("kv", "prod", 3)) == []
    assert tls.missing_names(_secret(pair, ca), tls.dns_names("kv", "prod", 4)) == [
        "kv-3.kv-peer.prod.svc",
        "kv-3.kv-peer.prod.svc.cluster.local",
    ]
    assert tls.missing_names(None, ["a"]) == ["a"]


# --------------------------------------------------------------------------- transitions
# Turning TLS on or off for a running cluster: test_tls_transition.py.


# --------------------------------------------------------------------------- planner


@given(
    blocker=st.text(min_size=1, max_size=40),
    size=st.integers(1, 5),
    replicas=st.integers(1, 7),
    sts=st.booleans(),
)
@settings(max_examples=60)
def test_missing_certificates_touch_no_pod(
    blocker: str, size: int, replicas: int, sts: bool
) -> None:
    """cert-manager missing (or a Secret not issued yet): the planner waits; it never
    creates, grows, rolls or deletes anything a pod would mount the Secrets in."""
    observed = cluster(size, replicas=replicas)
    if not sts:
        observed = replace(observed, statefulset=None, children_exist=False)
    observed = replace(observed, tls_blocker=blocker)
    action = plan(observed)
    assert isinstance(action, Wait)
    assert action.reason is Reason.CERTIFICATES_NOT_READY
    assert not isinstance(
        action,
        CreateChildren
        | GrowStatefulSet
        | DeletePod
        | UpdateStatefulSet
        | UpdateRestart
        | AddLearner,
    )


def test_without_a_blocker_the_planner_goes_on() -> None:
    observed = replace(cluster(3), statefulset=None, children_exist=False)
    assert isinstance(plan(observed), CreateChildren)


# --------------------------------------------------------------------------- pod template


def _rkv(spec_tls: dict[str, Any] | None) -> o.RaftKVObject:
    spec: dict[str, Any] = {"replicas": 3}
    if spec_tls is not None:
        spec["tls"] = spec_tls
    return o.RaftKVObject("kv", "prod", "uid-1", spec=spec)


def _env(template: dict[str, Any]) -> dict[str, str]:
    (container,) = template["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_the_template_without_tls_is_what_it_was() -> None:
    """No TLS label, http URLs, HTTP probes: an upgraded operator rolls no plain cluster."""
    template = o.pod_template(_rkv(None))
    assert tls.TLS_LABEL not in template["metadata"]["labels"]
    env = _env(template)
    assert env["RAFTKV_ADVERTISE_PEER_URL"].startswith("http://")
    assert not any(k.startswith(("RAFTKV_CERT", "RAFTKV_PEER_CERT")) for k in env)
    (container,) = template["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTP"


def test_the_template_with_tls_mounts_the_secrets_and_speaks_https() -> None:
    template = o.pod_template(_rkv({"mode": "managed"}))
    assert template["metadata"]["labels"][tls.TLS_LABEL] == "client-peer"
    env = _env(template)
    assert env["RAFTKV_ADVERTISE_PEER_URL"] == "https://$(POD_NAME).kv-peer.prod.svc:2380"
    assert env["RAFTKV_ADVERTISE_CLIENT_URL"] == "https://$(POD_NAME).kv-peer.prod.svc:2379"
    assert env["RAFTKV_DISCOVERY_ENDPOINTS"] == "https://kv-client.prod.svc:2379"
    assert env["RAFTKV_CERT_FILE"] == "/etc/raftkv/tls/tls.crt"
    assert env["RAFTKV_TRUSTED_CA_FILE"] == "/etc/raftkv/tls/ca.crt"
    assert env["RAFTKV_PEER_TRUSTED_CA_FILE"] == "/etc/raftkv/peer/ca.crt"
    assert "RAFTKV_CLIENT_CERT_AUTH" not in env
    volumes = {v["name"]: v["secret"]["secretName"] for v in template["spec"]["volumes"]}
    assert volumes == {"server-tls": "kv-server-tls", "peer-tls": "kv-peer-tls"}
    (container,) = template["spec"]["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert "subPath" not in mounts["server-tls"]  # a subPath mount never updates
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert o.member_revision(_rkv(None)) != o.member_revision(_rkv({"mode": "managed"}))


def test_client_cert_auth_probes_from_inside_the_pod() -> None:
    template = o.pod_template(_rkv({"client": {"enabled": True, "clientCertAuth": True}}))
    env = _env(template)
    assert env["RAFTKV_CLIENT_CERT_AUTH"] == "true"
    (container,) = template["spec"]["containers"]
    probe = container["readinessProbe"]
    assert "httpGet" not in probe
    assert probe["exec"]["command"][-1] == "/readyz"
    compile(probe["exec"]["command"][2], "<probe>", "exec")  # the script is valid Python


def test_the_statefulset_with_tls_is_a_valid_statefulset() -> None:
    import kubernetes_validate

    sts = o.statefulset(_rkv({"mode": "managed", "client": {"clientCertAuth": True}}), 3)
    kubernetes_validate.validate(sts, "1.30", strict=True)


# --------------------------------------------------------------------------- schemas


def _raftkv(spec_tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "raftkv.dev/v1alpha1",
        "kind": "RaftKV",
        "metadata": {"name": "kv"},
        "spec": {"replicas": 3, "tls": spec_tls},
    }


def test_crd_defaults_spec_tls() -> None:
    from support.crd_schema import load_crd

    schema = ObjectSchema(version_schema(load_crd()))
    shaped, causes = schema.admit(_raftkv({}))
    assert causes == []
    assert shaped["spec"]["tls"] == {
        "mode": "managed",
        "duration": "2160h",
        "client": {"enabled": True, "clientCertAuth": False},
        "peer": {"enabled": True},
    }
    assert tls.spec_of(shaped["spec"]) == tls.TLSSpec()


@pytest.mark.parametrize(
    ("spec_tls", "message"),
    [
        ({"mode": "certManager"}, "needs certManager.issuerRef"),
        ({"certManager": {"issuerRef": {"name": "ca"}}}, "only read with mode certManager"),
        ({"mode": "acme"}, "mode"),
        ({"duration": "90 days"}, "duration"),
        ({"mode": "certManager", "certManager": {"issuerRef": {}}}, "name"),
        (
            {"mode": "certManager", "certManager": {"issuerRef": {"name": "a", "kind": "Pod"}}},
            "kind",
        ),
    ],
)
def test_crd_refuses_bad_spec_tls(spec_tls: dict[str, Any], message: str) -> None:
    found = errors(_raftkv(spec_tls))
    assert any(message in e for e in found), found


def test_certificates_are_valid_against_cert_managers_crd() -> None:
    crd = yaml.safe_load(CERTMANAGER_CRD.read_text())
    schema = ObjectSchema(version_schema(crd, "v1"))
    t = tls.TLSSpec(mode=tls.CERT_MANAGER, issuer_name="ca-issuer", issuer_kind="ClusterIssuer")
    for kind in ("server", "peer"):
        cert = tls.certificate("kv", "prod", kind, t, 3)
        shaped, causes = schema.admit(cert)
        assert causes == []
        assert shaped == cert  # nothing pruned: every field is one cert-manager knows
        spec = cert["spec"]
        assert spec["renewBefore"] == "720h"
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["issuerRef"] == {
            "name": "ca-issuer",
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }
        assert "kv-2.kv-peer.prod.svc.cluster.local" in spec["dnsNames"]
    assert tls.certificate("kv", "prod", "peer", t, 3)["spec"]["secretName"] == "kv-peer-tls"
