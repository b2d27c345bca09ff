"""The TLS contexts of one member, built from its `ServerConfig` (docs/tls.md).

Two identities, each with its own reloader:
- `server` (--cert-file/--key-file): presented on the client port, and by the member
  when it is itself a client of another member's client port (forwarding to the
  leader, discovery), verified there against --trusted-ca-file. With
  --client-cert-auth, clients must present a certificate signed by --trusted-ca-file.
- `peer` (--peer-cert-file/--peer-key-file): mutual TLS on the peer port. Both ends
  present their peer certificate and check the other's against
  --peer-trusted-ca-file; the peer secret is still checked on top, as a second factor.
  The peer certificate itself must chain to that CA, at start and at every reload.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from ..tls import (
    CertFiles,
    CertReloader,
    TLSMetrics,
    check_cert,
    client_context,
    client_ssl_context,
    read_ca,
    server_context,
)
from .config import ServerConfig, check_tls_flags


@dataclass(slots=True)
class MemberTLS:
    client_server: ssl.SSLContext | None = None
    """The client port's server context; None = plain HTTP."""
    member_client: ssl.SSLContext | None = None
    """For this member's own calls to other members' client ports."""
    peer_server: ssl.SSLContext | None = None
    peer_client: ssl.SSLContext | None = None
    reloaders: list[CertReloader] = field(default_factory=list)
    metrics: TLSMetrics | None = None

    def attach_metrics(self, registry: CollectorRegistry) -> None:
        if not self.reloaders:
            return
        self.metrics = TLSMetrics(registry)
        for r in self.reloaders:
            r.attach(self.metrics)


def member_client_verify(cfg: ServerConfig) -> ssl.SSLContext | bool:
    """`raftkv.client`'s `verify` for this member's own calls to other members' client
    ports (discovery while joining): trust --trusted-ca-file, present the server
    certificate. True (httpx's default) without client TLS."""
    if not cfg.cert_file:
        return True
    return client_ssl_context(cfg.trusted_ca_file or None, cfg.cert_file, cfg.key_file)


def member_tls(cfg: ServerConfig) -> MemberTLS:
    """Check the TLS flags and every file they name, and build the contexts;
    ValueError for flags that do not fit together, `tls.CertFileError` (one line
    naming the file) for the first bad file."""
    check_tls_flags(cfg)
    out = MemberTLS()
    if cfg.cert_file:
        loaded = check_cert(CertFiles(Path(cfg.cert_file), Path(cfg.key_file)))
        trusted = read_ca(Path(cfg.trusted_ca_file)) if cfg.trusted_ca_file else None
        out.client_server = server_context(loaded, trusted if cfg.client_cert_auth else None)
        out.member_client = client_context(trusted, loaded)
        out.reloaders.append(CertReloader("server", loaded, [out.client_server, out.member_client]))
    if cfg.peer_cert_file:
        files = CertFiles(
            Path(cfg.peer_cert_file), Path(cfg.peer_key_file), Path(cfg.peer_trusted_ca_file)
        )
        loaded = check_cert(files)
        assert loaded.ca_pem is not None  # files.ca is set
        out.peer_server = server_context(loaded, loaded.ca_pem)
        out.peer_client = client_context(loaded.ca_pem, loaded)
        out.reloaders.append(CertReloader("peer", loaded, [out.peer_server, out.peer_client]))
    return out
