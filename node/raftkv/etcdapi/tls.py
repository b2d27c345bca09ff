"""TLS of the etcd port, from the client port's flags (`--cert-file`, `--key-file`,
`--trusted-ca-file`, `--client-cert-auth`; docs/tls.md): the same certificates serve
both, and a certificate rotated on disk reaches the etcd port's next handshake, as it
reaches the client port's (grpc asks `fetch` before each handshake)."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import grpc

from ..server.config import ServerConfig

log = logging.getLogger("raftkv.etcdapi")


class _Reloader:
    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.files = self._read()

    def _read(self) -> tuple[bytes, bytes, bytes | None]:
        cfg = self.cfg
        ca = Path(cfg.trusted_ca_file).read_bytes() if cfg.trusted_ca_file else None
        return Path(cfg.cert_file).read_bytes(), Path(cfg.key_file).read_bytes(), ca

    def config(self) -> grpc.ServerCertificateConfiguration:
        cert, key, ca = self.files
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """None (keep the current ones) unless the files changed and still form a
        valid pair: a half-written rotation never breaks the port."""
        try:
            files = self._read()
            if files == self.files:
                return None
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                self.cfg.cert_file, self.cfg.key_file
            )
        except (OSError, ssl.SSLError) as exc:
            log.warning("etcd API: keeping the current certificate: %s", exc)
            return None
        self.files = files
        log.info("etcd API: certificate reloaded")
        return self.config()


def server_credentials(cfg: ServerConfig) -> grpc.ServerCredentials | None:
    """None without `--cert-file` (plain gRPC)."""
    if not cfg.cert_file:
        return None
    r = _Reloader(cfg)
    # grpc documents None from the fetcher as "no change"; its stubs do not say so.
    return grpc.dynamic_ssl_server_credentials(
        r.config(),
        r.fetch,  # type: ignore[arg-type]
        require_client_authentication=cfg.client_cert_auth,
    )
