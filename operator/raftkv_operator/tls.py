"""``spec.tls``: the members' certificates, issued by the operator or by cert-manager.

Two modes, one contract with the pods: a ``kubernetes.io/tls`` Secret for the client
port (``<name>-server-tls``) and one for the peer port (``<name>-peer-tls``), each with
``tls.crt``, ``tls.key`` and ``ca.crt``, mounted into every member. The members reload
them when the kubelet updates the mounted files (docs/tls.md), so a renewal rewrites
a Secret in place and touches no pod.

- ``managed``: the operator keeps its own CA in ``<name>-ca`` (created once, never
  rewritten: rewriting it would strand every member whose certificate it signed) and
  issues both certificates itself; :func:`renewal` decides, as a pure function of the
  clock and the certificate's validity, when one is renewed (at two thirds of its
  lifetime, as cert-manager does by default).
- ``certManager``: the operator writes two cert-manager ``Certificate`` objects and
  cert-manager writes the Secrets. Without the cert-manager CRDs nothing is written
  and ``CertificatesReady`` says why.

Everything here but :func:`sync` is pure (names, SANs, decisions, object builders), so
the rules are tested on plain data; :func:`sync` is the one I/O step a reconcile pass
runs before it plans.

Turning TLS on or off for a running cluster is a three-phase roll driven by
``tls_transition.py``; what a phase renders travels in :class:`TLSSpec`'s transition
fields.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftkv.tls import client_ssl_context
from raftkv_operator import naming as n

JSON = dict[str, Any]

MANAGED = "managed"
CERT_MANAGER = "certManager"
#: cert-manager's own default lifetime (90 days), used by both modes.
DEFAULT_DURATION = "2160h"
#: The managed CA lives ten years; it is never rotated by the operator.
CA_LIFETIME = dt.timedelta(days=3650)
#: Backdating of issued certificates: members whose clocks run a little behind the
#: operator's must not see a certificate that is "not valid yet".
BACKDATE = dt.timedelta(minutes=5)
#: "Expiring soon" below this, or below a sixth of the lifetime for short ones (a
#: healthy renewal happens at a third left, so the warning means renewal is failing).
EXPIRY_WARNING = 7 * 86400.0

CERTIFICATES_READY = "CertificatesReady"
CERT_MANAGER_CRD = "certificates.cert-manager.io"
CERT_MANAGER_GROUP = "cert-manager.io"
CERT_MANAGER_VERSION = "v1"
CERTIFICATE_PLURAL = "certificates"

#: Pod template label naming the TLS setting the template was rendered with
#: (``client``, ``peer``, ``client-peer``; absent = no TLS). How the operator knows
#: what a running StatefulSet speaks.
TLS_LABEL = "raftkv.dev/tls"
#: Key of ``spec.tls`` under which a transition phase's rendering travels from the
#: reconcile pass to the template builders (``tls_transition.py``). Never read from a
#: stored RaftKV: the CRD schema does not know it, so the apiserver prunes it.
RENDER_KEY = "_transitionPhase"

SERVER_MOUNT = "/etc/raftkv/tls"
PEER_MOUNT = "/etc/raftkv/peer"
SERVER_VOLUME = "server-tls"
PEER_VOLUME = "peer-tls"

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)")
_DURATION = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:h|m|s))+$")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class TLSSpec:
    """``spec.tls``, defaulted (the CRD defaults it too; older objects may lack fields)."""

    mode: str = MANAGED
    issuer_name: str = ""
    issuer_kind: str = "Issuer"
    issuer_group: str = CERT_MANAGER_GROUP
    duration: str = DEFAULT_DURATION
    client: bool = True
    client_cert_auth: bool = False
    peer: bool = True
    #: During a transition (``tls_transition.py``) the scheme each port is *reached*
    #: with may differ from whether it has certificates (None: https iff certificates),
    #: and a port may also take plain connections. Never set from ``spec.tls``.
    client_https: bool | None = None
    peer_https: bool | None = None
    client_accept_plain: bool = False
    peer_accept_plain: bool = False
    #: The pod template label of the transition phase this renders ("" = none).
    transition_label: str = ""

    @property
    def enabled(self) -> bool:
        return self.client or self.peer

    @property
    def client_scheme_on(self) -> bool:
        """Whether the client port is reached over https (URLs, probes, discovery)."""
        return self.client if self.client_https is None else self.client_https

    @property
    def peer_scheme_on(self) -> bool:
        """Whether the peer port is reached over https (advertised peer URLs)."""
        return self.peer if self.peer_https is None else self.peer_https

    @property
    def lifetime(self) -> float:
        """Seconds a certificate is issued for."""
        return parse_duration(self.duration)

    @property
    def label(self) -> str:
        """The :data:`TLS_LABEL` value of this setting ("" = no TLS)."""
        return "-".join(p for p, on in (("client", self.client), ("peer", self.peer)) if on)


def parse_duration(text: str) -> float:
    """A Go duration as cert-manager writes them (``2160h``, ``1h30m``, ``90s``) in
    seconds; ValueError for anything else or a duration under one minute."""
    if not _DURATION.match(text or ""):
        raise ValueError(f"duration {text!r} is not a Go duration like 2160h or 1h30m")
    seconds = sum(float(v) * _UNITS[u] for v, u in _DURATION_PART.findall(text))
    if seconds < 60:
        raise ValueError(f"duration {text!r} is shorter than one minute")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as a Go duration of whole minutes or seconds (``720h``, ``20m``, ``90s``)."""
    whole = int(seconds)
    if whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"


def spec_of(spec: Mapping[str, Any]) -> TLSSpec | None:
    """``spec.tls`` of a RaftKV spec; None when TLS is off (absent, or both ports off)."""
    raw = spec.get("tls")
    if not raw:
        return None
    manager = raw.get("certManager") or {}
    issuer = manager.get("issuerRef") or {}
    client = raw.get("client") or {}
    peer = raw.get("peer") or {}
    out = TLSSpec(
        mode=str(raw.get("mode") or MANAGED),
        issuer_name=str(issuer.get("name") or ""),
        issuer_kind=str(issuer.get("kind") or "Issuer"),
        issuer_group=str(issuer.get("group") or CERT_MANAGER_GROUP),
        duration=str(raw.get("duration") or DEFAULT_DURATION),
        client=bool(client.get("enabled", True)),
        client_cert_auth=bool(client.get("clientCertAuth", False)),
        peer=bool(peer.get("enabled", True)),
    )
    phase = raw.get(RENDER_KEY)
    if isinstance(phase, Mapping):
        out = replace(
            out,
            client_https=phase.get("clientHTTPS"),
            peer_https=phase.get("peerHTTPS"),
            client_accept_plain=bool(phase.get("clientAcceptPlain")),
            peer_accept_plain=bool(phase.get("peerAcceptPlain")),
            transition_label=str(phase.get("transitionLabel") or ""),
        )
    return out if out.enabled else None


def running_label(statefulset: Mapping[str, Any] | None) -> str | None:
    """The TLS setting a StatefulSet's template runs ("" = none); None: no StatefulSet."""
    if statefulset is None:
        return None
    template = (statefulset.get("spec") or {}).get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    return str(labels.get(TLS_LABEL) or "")


def to_spec(t: TLSSpec) -> JSON:
    """A :class:`TLSSpec` as ``spec.tls`` JSON (the inverse of :func:`spec_of`)."""
    out: JSON = {
        "mode": t.mode,
        "duration": t.duration,
        "client": {"enabled": t.client, "clientCertAuth": t.client_cert_auth},
        "peer": {"enabled": t.peer},
    }
    if t.mode == CERT_MANAGER:
        out["certManager"] = {
            "issuerRef": {"name": t.issuer_name, "kind": t.issuer_kind, "group": t.issuer_group}
        }
    if t.transition_label:
        out[RENDER_KEY] = {
            "clientHTTPS": t.client_scheme_on,
            "peerHTTPS": t.peer_scheme_on,
            "clientAcceptPlain": t.client_accept_plain,
            "peerAcceptPlain": t.peer_accept_plain,
            "transitionLabel": t.transition_label,
        }
    return out


# --------------------------------------------------------------------------- names, SANs


def ca_secret(name: str) -> str:
    return f"{name}-ca"


def server_secret(name: str) -> str:
    return f"{name}-server-tls"


def peer_tls_secret(name: str) -> str:
    return f"{name}-peer-tls"


def certificate_name(name: str, kind: str) -> str:
    """The cert-manager Certificate for ``kind`` (``server`` or ``peer``)."""
    return f"{name}-{kind}"


def dns_names(name: str, namespace: str, replicas: int) -> list[str]:
    """Every name a member is reached by: each pod behind the headless Service (short
    and ``cluster.local`` forms, for ordinals ``0..replicas-1``), both Services, and
    localhost (the members' own probes and tools inside the pod)."""
    out: list[str] = []
    for svc in (n.peer_service(name), n.client_service(name)):
        out += [svc, f"{svc}.{namespace}", f"{svc}.{namespace}.svc"]
        out.append(f"{svc}.{namespace}.svc.cluster.local")
    peer = n.peer_service(name)
    for k in range(max(1, replicas)):
        pod = n.pod_name(name, k)
        out += [f"{pod}.{peer}.{namespace}.svc", f"{pod}.{peer}.{namespace}.svc.cluster.local"]
    out.append("localhost")
    return out


IP_ADDRESSES = ("127.0.0.1",)


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Renewal:
    """When a certificate is renewed: ``renew`` now, or look again at ``recheck_at``."""

    renew: bool
    recheck_at: float
    reason: str


def renewal(now: float, not_before: float, not_after: float, backdate: float = 0.0) -> Renewal:
    """Renew with a third of the *intended* lifetime left (cert-manager's default
    ``renewBefore`` = duration/3), or at once when the certificate is not valid now
    (expired, or a lifetime that makes no sense). Pure: the kopf timer calls it again
    on every pass.

    ``backdate`` is how far ``not_before`` was set before the moment of issue
    (:data:`BACKDATE` for the operator's own certificates, 0 for others). It is not
    part of the lifetime the certificate was asked for: counting it would make a
    ``duration: 1m`` certificate (valid from 5 minutes before to 1 minute after its
    issue) due the moment it is issued, and the operator would reissue on every pass."""
    lifetime = intended_lifetime(not_before, not_after, backdate)
    if lifetime <= 0:
        return Renewal(True, now, "the certificate has no valid lifetime")
    if now >= not_after:
        return Renewal(True, now, "the certificate has expired")
    if now < not_before - BACKDATE.total_seconds():
        return Renewal(True, now, "the certificate is not valid yet (clock went back?)")
    due = not_after - lifetime / 3
    if now >= due:
        return Renewal(True, now, f"two thirds of its lifetime passed ({_when(due)})")
    return Renewal(False, due, f"renewal due {_when(due)}")


def intended_lifetime(not_before: float, not_after: float, backdate: float = 0.0) -> float:
    """The lifetime a certificate was issued for: its validity minus the backdating
    (``not_before`` set ``backdate`` seconds before the moment of issue)."""
    return not_after - not_before - max(backdate, 0.0)


def warning_threshold(lifetime: float) -> float:
    """Seconds before expiry below which a certificate counts as expiring soon
    (``lifetime`` is the intended one, see :func:`intended_lifetime`)."""
    return min(EXPIRY_WARNING, max(lifetime, 0.0) / 6)


def expiring_soon(now: float, not_before: float, not_after: float, backdate: float = 0.0) -> bool:
    """Under the warning threshold: a sixth of the intended lifetime (half of what a
    renewal on time leaves), at most :data:`EXPIRY_WARNING`; ``backdate`` as in
    :func:`renewal`, so a fresh short-lived certificate never warns."""
    lifetime = intended_lifetime(not_before, not_after, backdate)
    return not_after - now < warning_threshold(lifetime)


@dataclass(frozen=True)
class CertInfo:
    """What the operator reads back from an issued certificate."""

    not_before: float
    not_after: float
    dns_names: frozenset[str]
    ip_addresses: frozenset[str]
    issuer: str
    #: The issuing CA's certificate verifies this one.
    signed_by_ca: bool


def read_cert(cert_pem: bytes, ca_pem: bytes | None = None) -> CertInfo:
    """Parse a PEM certificate (ValueError when it is not one)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = frozenset(san.get_values_for_type(x509.DNSName))
        ips = frozenset(str(i) for i in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = frozenset(), frozenset()
    signed = False
    if ca_pem:
        try:
            cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
            signed = True
        except (ValueError, TypeError, Exception):  # InvalidSignature is an Exception
            signed = False
    return CertInfo(
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        dns_names=dns,
        ip_addresses=ips,
        issuer=cert.issuer.rfc4514_string(),
        signed_by_ca=signed,
    )


def issue_reason(
    now: float, secret: Mapping[str, Any] | None, ca_pem: bytes, sans: Sequence[str]
) -> str | None:
    """Why the managed Secret ``secret`` must be (re)issued now; None: it is good."""
    if secret is None:
        return "the Secret does not exist"
    data = secret.get("data") or {}
    try:
        pem = base64.b64decode(data.get("tls.crt") or "")
        info = read_cert(pem, ca_pem)
    except ValueError:
        return "the Secret holds no readable certificate"
    if not data.get("tls.key"):
        return "the Secret has no key"
    if not info.signed_by_ca:
        return "the certificate is not signed by the cluster CA"
    missing = sorted(set(sans) - info.dns_names)
    if missing or not set(IP_ADDRESSES) <= info.ip_addresses:
        return f"the certificate does not name {', '.join(missing) or '127.0.0.1'}"
    # Only certificates signed by the operator's CA get here, and it backdates them all.
    decision = renewal(now, info.not_before, info.not_after, BACKDATE.total_seconds())
    return decision.reason if decision.renew else None


def missing_names(secret: Mapping[str, Any] | None, sans: Sequence[str]) -> list[str]:
    """The names of ``sans`` the certificate in ``secret`` does not carry (all of
    them when there is no readable certificate)."""
    try:
        info = read_cert(_decode(secret, "tls.crt"))
    except ValueError:
        return list(sans)
    return [s for s in sans if s not in info.dns_names]


# --------------------------------------------------------------------------- issuing


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_ca(name: str, now: float) -> KeyPair:
    """A self-signed CA for one RaftKV (P-256, ten years)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"raftkv {name} CA")])
    start = dt.datetime.fromtimestamp(now, dt.UTC) - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: KeyPair, common_name: str, sans: Sequence[str], now: float, lifetime: float
) -> KeyPair:
    """A member certificate signed by ``ca``: server and client auth (a member is a
    client of other members' ports too), the given DNS names and 127.0.0.1."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.fromtimestamp(now, dt.UTC) - BACKDATE
    # A certificate cannot outlive the CA that vouches for it (it would not verify).
    end = min(dt.datetime.fromtimestamp(now + lifetime, dt.UTC), ca_cert.not_valid_after_utc)
    alt: list[x509.GeneralName] = [x509.DNSName(s) for s in sans]
    alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IP_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


# --------------------------------------------------------------------------- objects


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _labels(name: str, component: str) -> dict[str, str]:
    return n.common_labels(name, component)


def ca_secret_object(name: str, namespace: str, ca: KeyPair) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": ca_secret(name),
            "namespace": namespace,
            "labels": _labels(name, "ca"),
        },
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": _b64(ca.cert_pem), "tls.key": _b64(ca.key_pem)},
    }


def tls_secret_object(
    name: str, namespace: str, secret_name: str, component: str, pair: KeyPair, ca_pem: bytes
) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name,
            "namespace": namespace,
            "labels": _labels(name, component),
        },
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": _b64(pair.cert_pem),
            "tls.key": _b64(pair.key_pem),
            "ca.crt": _b64(ca_pem),
        },
    }


def certificate(name: str, namespace: str, kind: str, t: TLSSpec, replicas: int) -> JSON:
    """A cert-manager ``Certificate`` (cert-manager.io/v1) for ``kind`` (``server`` or
    ``peer``): the same SANs and Secret as the managed mode, renewed with a third of
    its lifetime left, a new private key at every renewal."""
    secret = server_secret(name) if kind == "server" else peer_tls_secret(name)
    return {
        "apiVersion": f"{CERT_MANAGER_GROUP}/{CERT_MANAGER_VERSION}",
        "kind": "Certificate",
        "metadata": {
            "name": certificate_name(name, kind),
            "namespace": namespace,
            "labels": _labels(name, f"{kind}-certificate"),
        },
        "spec": {
            "secretName": secret,
            "secretTemplate": {"labels": _labels(name, f"{kind}-tls")},
            "commonName": f"{name}-{kind}",
            "duration": t.duration,
            "renewBefore": format_duration(t.lifetime / 3),
            "dnsNames": dns_names(name, namespace, replicas),
            "ipAddresses": list(IP_ADDRESSES),
            "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"name": t.issuer_name, "kind": t.issuer_kind, "group": t.issuer_group},
        },
    }


def certificate_needs_update(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return dict(existing.get("spec") or {}) != dict(wanted["spec"])


# --------------------------------------------------------------------------- pod template


def pod_env(t: TLSSpec) -> list[JSON]:
    """The ``RAFTKV_*`` TLS variables of the member container (docs/tls.md)."""
    env: list[JSON] = []
    if t.client:
        env += [
            {"name": "RAFTKV_CERT_FILE", "value": f"{SERVER_MOUNT}/tls.crt"},
            {"name": "RAFTKV_KEY_FILE", "value": f"{SERVER_MOUNT}/tls.key"},
            {"name": "RAFTKV_TRUSTED_CA_FILE", "value": f"{SERVER_MOUNT}/ca.crt"},
        ]
        if t.client_cert_auth:
            env.append({"name": "RAFTKV_CLIENT_CERT_AUTH", "value": "true"})
        if t.client_accept_plain:
            env.append({"name": "RAFTKV_CLIENT_ACCEPT_PLAIN", "value": "true"})
    if t.peer:
        env += [
            {"name": "RAFTKV_PEER_CERT_FILE", "value": f"{PEER_MOUNT}/tls.crt"},
            {"name": "RAFTKV_PEER_KEY_FILE", "value": f"{PEER_MOUNT}/tls.key"},
            {"name": "RAFTKV_PEER_TRUSTED_CA_FILE", "value": f"{PEER_MOUNT}/ca.crt"},
        ]
        if t.peer_accept_plain:
            env.append({"name": "RAFTKV_PEER_ACCEPT_PLAIN", "value": "true"})
    return env


def pod_volumes(name: str, t: TLSSpec) -> tuple[list[JSON], list[JSON]]:
    """(volumes, volumeMounts) of the Secrets. Mounted whole and read-only, never with
    ``subPath`` (a subPath mount is not updated when the Secret changes)."""
    volumes: list[JSON] = []
    mounts: list[JSON] = []
    for on, volume, secret, path in (
        (t.client, SERVER_VOLUME, server_secret(name), SERVER_MOUNT),
        (t.peer, PEER_VOLUME, peer_tls_secret(name), PEER_MOUNT),
    ):
        if on:
            volumes.append({"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440}})
            mounts.append({"name": volume, "mountPath": path, "readOnly": True})
    return volumes, mounts


#: The exec probe used with clientCertAuth: the kubelet's httpGet cannot present a
#: client certificate, so the member's own Python asks its client port over TLS with
#: the mounted certificate (which carries clientAuth and 127.0.0.1).
PROBE_SCRIPT = (
    "import ssl,sys,urllib.request as u;"
    f"c=ssl.create_default_context(cafile='{SERVER_MOUNT}/ca.crt');"
    f"c.load_cert_chain('{SERVER_MOUNT}/tls.crt','{SERVER_MOUNT}/tls.key');"
    f"sys.exit(0 if u.urlopen('https://127.0.0.1:{n.CLIENT_PORT}'+sys.argv[1],"
    "context=c,timeout=2).status==200 else 1)"
)


def addressing(base: n.Addressing, t: TLSSpec | None) -> n.Addressing:
    """``base`` with https for the ports ``t`` secures (the operator reaches members'
    client ports, and registers their peer URLs, with the scheme they serve)."""
    client = t is not None and t.client_scheme_on
    peer = t is not None and t.peer_scheme_on
    return n.Addressing(
        peer_url_template=with_scheme(base.peer_url_template, peer),
        client_url_template=with_scheme(base.client_url_template, client),
    )


def client_context(ca_pem: bytes, pair: KeyPair | None) -> ssl.SSLContext:
    """The operator's own client context for one RaftKV: trust its CA, present the
    server certificate (it carries clientAuth) for members run with clientCertAuth.
    The PEMs live only in memory and a private temporary directory while loading."""
    with tempfile.TemporaryDirectory(prefix="raftkv-tls-") as tmp:
        ca = Path(tmp, "ca.crt")
        ca.write_bytes(ca_pem)
        if pair is None or not pair.cert_pem or not pair.key_pem:
            return client_ssl_context(ca)
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(pair.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(pair.key_pem)
        return client_ssl_context(ca, cert, key)


def scheme(on: bool) -> str:
    return "https" if on else "http"


def with_scheme(url_template: str, on: bool) -> str:
    """``url_template`` with its scheme set to https (``on``) or http."""
    rest = url_template.split("://", 1)[-1]
    return f"{scheme(on)}://{rest}"


# --------------------------------------------------------------------------- status


def not_after_of(secrets: Sequence[Mapping[str, Any] | None]) -> tuple[float, float] | None:
    """(not_before, not_after) of the soonest-expiring certificate among ``secrets``
    (None when none holds a readable one)."""
    found: list[tuple[float, float]] = []
    for secret in secrets:
        if secret is None:
            continue
        try:
            pem = base64.b64decode((secret.get("data") or {}).get("tls.crt") or "")
            info = read_cert(pem)
        except ValueError:
            continue
        found.append((info.not_before, info.not_after))
    if not found:
        return None
    return min(found, key=lambda p: p[1])


def _when(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TLSState:
    """What one pass found out about the certificates, for the planner and status."""

    #: Why the pods cannot be created or touched yet (Secrets not there); None: they can.
    blocker: str | None
    #: (status, reason, message) of ``CertificatesReady``.
    condition: tuple[str, str, str]
    #: Soonest notAfter of the certificates in use (Unix seconds), if known.
    not_after: float | None = None
    #: Why ``spec.tls`` is not what the members move to yet (a transition to another
    #: setting finishes first; ``tls_transition.decide``).
    transition: str | None = None
    #: ``status.tls.transition`` of the transition in progress (None: none).
    record: JSON | None = None
    #: CA PEM the operator's own client trusts, and a client pair it may present.
    ca_pem: bytes | None = None
    client_pair: KeyPair | None = None
    #: Events (type, reason, message) this pass's certificate work produced.
    events: tuple[tuple[str, str, str], ...] = ()


def condition_for(
    t: TLSSpec,
    now: float,
    validity: tuple[float, float] | None,
    transition: str | None,
    backdate: float = 0.0,
) -> tuple[str, str, str]:
    """``CertificatesReady`` once the Secrets are there (pure); ``backdate`` as in
    :func:`renewal` (the operator's own certificates are backdated, cert-manager's not)."""
    if validity is None:
        return ("False", "CertificatesPending", "the certificates are not issued yet")
    not_before, not_after = validity
    if now >= not_after:
        return ("False", "CertificateExpired", f"a certificate expired at {_when(not_after)}")
    if expiring_soon(now, not_before, not_after, backdate):
        return (
            "False",
            "CertificateExpiringSoon",
            f"a certificate expires at {_when(not_after)} and was not renewed",
        )
    if transition is not None:
        return ("True", "TLSTransitionQueued", transition)
    how = "issued by the operator's CA" if t.mode == MANAGED else "issued by cert-manager"
    return ("True", "CertificatesIssued", f"{how}; the soonest expires at {_when(not_after)}")


# --------------------------------------------------------------------------- I/O


class TLSKube(Protocol):
    """The calls :func:`sync` makes."""

    async def read(self, kind: str, namespace: str, name: str) -> JSON | None: ...
    async def create(self, obj: JSON) -> bool: ...
    async def replace_secret(self, namespace: str, name: str, obj: JSON) -> None: ...
    async def crd_exists(self, name: str) -> bool: ...
    async def read_certificate(self, namespace: str, name: str) -> JSON | None: ...
    async def create_certificate(self, obj: JSON) -> bool: ...
    async def replace_certificate(self, namespace: str, name: str, obj: JSON) -> None: ...


def _adopt(obj: JSON, owner: Mapping[str, Any]) -> JSON:
    meta = owner.get("metadata") or {}
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": str(owner.get("apiVersion") or n.API_VERSION),
            "kind": str(owner.get("kind") or n.KIND),
            "name": str(meta.get("name")),
            "uid": str(meta.get("uid") or ""),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    return obj


def _decode(secret: Mapping[str, Any] | None, key: str) -> bytes:
    if secret is None:
        return b""
    try:
        return base64.b64decode((secret.get("data") or {}).get(key) or "")
    except ValueError:
        return b""


async def sync(
    kube: TLSKube,
    owner: Mapping[str, Any],
    t: TLSSpec,
    replicas: int,
    now: float,
    transition: str | None = None,
) -> TLSState:
    """Make the certificates of ``t`` exist and be fresh; return what the pass needs.

    Idempotent and level-triggered like the rest of the pass: every step re-reads and
    only writes what is missing or due (a repeat after a crash re-issues at most once
    more). ``replicas`` is the number of ordinals the certificates must name."""
    meta = owner.get("metadata") or {}
    name, namespace = str(meta["name"]), str(meta.get("namespace") or "default")
    if t.mode == CERT_MANAGER:
        return await _sync_cert_manager(kube, owner, name, namespace, t, replicas, now, transition)
    events: list[tuple[str, str, str]] = []
    ca_obj = await kube.read("Secret", namespace, ca_secret(name))
    if ca_obj is None:
        ca = new_ca(name, now)
        if await kube.create(_adopt(ca_secret_object(name, namespace, ca), owner)):
            events.append(("Normal", "CACreated", f"created the cluster CA in {ca_secret(name)}"))
        ca_obj = await kube.read("Secret", namespace, ca_secret(name))
    ca_pair = KeyPair(_decode(ca_obj, "tls.crt"), _decode(ca_obj, "tls.key"))
    try:
        ca_info = read_cert(ca_pair.cert_pem)
    except ValueError:
        bad = f"the CA Secret {ca_secret(name)} holds no readable certificate; not issuing"
        return TLSState(bad, ("False", "CAInvalid", bad), transition=transition)
    if now >= ca_info.not_after:
        # Never renewed by the operator (ten years); a certificate it signed now would
        # not verify, so issue nothing and say why rather than fail on every pass.
        bad = (
            f"the CA in {ca_secret(name)} expired at {_when(ca_info.not_after)}; not issuing "
            f"(delete the Secret for a new CA, then restart the members)"
        )
        return TLSState(bad, ("False", "CAInvalid", bad), transition=transition)
    sans = dns_names(name, namespace, replicas)
    found: list[Mapping[str, Any] | None] = []
    client_pair: KeyPair | None = None
    for on, secret_name, component in (
        (t.client, server_secret(name), "server-tls"),
        (t.peer, peer_tls_secret(name), "peer-tls"),
    ):
        if not on:
            continue
        existing = await kube.read("Secret", namespace, secret_name)
        why = issue_reason(now, existing, ca_pair.cert_pem, sans)
        if why is not None:
            pair = issue(ca_pair, f"{name}-{component}", sans, now, t.lifetime)
            obj = _adopt(
                tls_secret_object(name, namespace, secret_name, component, pair, ca_pair.cert_pem),
                owner,
            )
            if existing is None:
                await kube.create(obj)
                events.append(("Normal", "CertificateIssued", f"{secret_name}: issued"))
            else:
                await kube.replace_secret(namespace, secret_name, obj)
                events.append(("Normal", "CertificateRenewed", f"{secret_name}: renewed, {why}"))
            existing = obj
        found.append(existing)
        if secret_name == server_secret(name):
            client_pair = KeyPair(_decode(existing, "tls.crt"), _decode(existing, "tls.key"))
    validity = not_after_of(found)
    state = condition_for(t, now, validity, transition, BACKDATE.total_seconds())
    if state[1] == "CertificateExpiringSoon":
        events.append(("Warning", "CertificateExpiringSoon", state[2]))
    return TLSState(
        blocker=None,
        condition=state,
        not_after=validity[1] if validity else None,
        transition=transition,
        ca_pem=ca_pair.cert_pem,
        client_pair=client_pair,
        events=tuple(events),
    )


async def _sync_cert_manager(
    kube: TLSKube,
    owner: Mapping[str, Any],
    name: str,
    namespace: str,
    t: TLSSpec,
    replicas: int,
    now: float,
    transition: str | None,
) -> TLSState:
    secrets_wanted = [
        s for on, s in ((t.client, server_secret(name)), (t.peer, peer_tls_secret(name))) if on
    ]
    if not await kube.crd_exists(CERT_MANAGER_CRD):
        existing = [await kube.read("Secret", namespace, s) for s in secrets_wanted]
        why = (
            f"spec.tls.mode is certManager but the CRD {CERT_MANAGER_CRD} is not installed; "
            f"install cert-manager or use mode: managed"
        )
        validity = not_after_of(existing)
        # Secrets made earlier keep a running cluster going; without them no pod is made.
        blocker = why if any(s is None for s in existing) else None
        return TLSState(
            blocker,
            ("False", "CertManagerMissing", why),
            not_after=validity[1] if validity else None,
            transition=transition,
            events=(("Warning", "CertManagerMissing", why),),
        )
    events: list[tuple[str, str, str]] = []
    for kind, on in (("server", t.client), ("peer", t.peer)):
        if not on:
            continue
        wanted = _adopt(certificate(name, namespace, kind, t, replicas), owner)
        existing_cert = await kube.read_certificate(namespace, wanted["metadata"]["name"])
        if existing_cert is None:
            if await kube.create_certificate(wanted):
                events.append(("Normal", "CertificateCreated", f"created Certificate {kind}"))
        elif certificate_needs_update(existing_cert, wanted):
            await kube.replace_certificate(namespace, wanted["metadata"]["name"], wanted)
            events.append(("Normal", "CertificateUpdated", f"updated Certificate {kind}"))
    found = [await kube.read("Secret", namespace, s) for s in secrets_wanted]
    if any(s is None for s in found):
        why = "waiting for cert-manager to issue " + ", ".join(
            s for s, obj in zip(secrets_wanted, found, strict=True) if obj is None
        )
        return TLSState(
            why, ("False", "CertificatesPending", why), transition=transition, events=tuple(events)
        )
    sans = dns_names(name, namespace, replicas)
    stale = [
        f"{s} ({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''})"
        for s, obj in zip(secrets_wanted, found, strict=True)
        if (missing := missing_names(obj, sans))
    ]
    if stale:
        # Grown past what the certificates name: a member added now could not be
        # reached by its peers (they check its name) until cert-manager reissues.
        why = "waiting for cert-manager to reissue " + "; ".join(stale)
        return TLSState(
            why, ("False", "CertificatesPending", why), transition=transition, events=tuple(events)
        )
    ca_pem = _decode(found[0], "ca.crt") or None
    client_pair = None
    if t.client:
        client_pair = KeyPair(_decode(found[0], "tls.crt"), _decode(found[0], "tls.key"))
    validity = not_after_of(found)
    state = condition_for(t, now, validity, transition)
    if state[1] == "CertificateExpiringSoon":
        events.append(("Warning", "CertificateExpiringSoon", state[2]))
    return TLSState(
        None,
        state,
        not_after=validity[1] if validity else None,
        transition=transition,
        ca_pem=ca_pem,
        client_pair=client_pair,
        events=tuple(events),
    )


async def read_only(kube: TLSKube, owner: Mapping[str, Any], t: TLSSpec) -> TLSState:
    """The certificates of ``t`` as they are, nothing written: while TLS is being
    turned off the members still mount them (and the operator still trusts their CA),
    but there is no ``spec.tls`` any more to issue or renew from."""
    meta = owner.get("metadata") or {}
    name, namespace = str(meta["name"]), str(meta.get("namespace") or "default")
    wanted = [
        s for on, s in ((t.client, server_secret(name)), (t.peer, peer_tls_secret(name))) if on
    ]
    found = [await kube.read("Secret", namespace, s) for s in wanted]
    missing = [s for s, obj in zip(wanted, found, strict=True) if obj is None]
    if not wanted:
        return TLSState(None, ("True", "TLSTurningOff", "no port mounts certificates"))
    if missing:
        why = "TLS is being turned off but the members still mount " + ", ".join(missing)
        return TLSState(why, ("False", "CertificatesPending", why))
    validity = not_after_of(found)
    client_pair = None
    if t.client:
        client_pair = KeyPair(_decode(found[0], "tls.crt"), _decode(found[0], "tls.key"))
    return TLSState(
        None,
        ("True", "TLSTurningOff", "the members still mount their certificates until TLS is off"),
        not_after=validity[1] if validity else None,
        ca_pem=_decode(found[0], "ca.crt") or None,
        client_pair=client_pair,
    )
