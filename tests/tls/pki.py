"""A throwaway PKI for the TLS tests: a CA and certificates issued by it, written as
PEM files the way a mounted Kubernetes Secret lays them out (`..data` -> a dated
directory, each file a symlink through `..data`), so a rotation is one atomic symlink
swap exactly as the kubelet does it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_serials = itertools.count(1000)
_swaps = itertools.count(1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes
    serial: int


class CA:
    def __init__(self, name: str = "raftkv test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(next(_serials))
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        name: str = "member",
        *,
        not_before: dt.timedelta = dt.timedelta(hours=-1),
        not_after: dt.timedelta = dt.timedelta(days=7),
    ) -> Issued:
        """A certificate for 127.0.0.1 and localhost, good for both server and client
        authentication (members are both); validity relative to now."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        serial = next(_serials)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now + not_before)
            .not_valid_after(now + not_after)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), serial)


class SecretDir:
    """`tls.crt`, `tls.key` and `ca.crt` as the kubelet mounts a Secret: stable paths,
    contents swapped atomically by re-pointing `..data`."""

    def __init__(self, root: Path, ca: CA, issued: Issued) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.put(ca.pem, issued)
        for name in ("tls.crt", "tls.key", "ca.crt"):
            link = root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)

    @property
    def cert(self) -> Path:
        return self.root / "tls.crt"

    @property
    def key(self) -> Path:
        return self.root / "tls.key"

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    def put(self, ca_pem: bytes, issued: Issued, *, key_pem: bytes | None = None) -> None:
        """Swap in new contents in one rename (`key_pem` overrides the issued key, to
        plant a mismatched pair)."""
        version = self.root / f"..v{next(_swaps)}"
        version.mkdir()
        (version / "tls.crt").write_bytes(issued.cert_pem)
        (version / "tls.key").write_bytes(key_pem if key_pem is not None else issued.key_pem)
        (version / "ca.crt").write_bytes(ca_pem)
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(version.name)
        os.replace(tmp, self.root / "..data")
