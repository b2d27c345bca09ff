"""TLS for members and clients: checking certificate files, building `ssl.SSLContext`s,
and re-reading the files when they change on disk.

Why it looks the way it does:

- Every problem with a file is found *before* OpenSSL sees it, with `cryptography`, so
  the message names the file and the problem ("expired on ...", "does not match the
  certificate in ...") instead of an OpenSSL error code. `CertFileError` is the one
  error type; `raftkv serve` prints it as one line and exits non-zero.
- A Kubernetes Secret mounted as a volume is updated in place by swapping the `..data`
  symlink, so the paths stay the same while their targets change. `CertReloader`
  polls the resolved files (inode, size, mtime) and, once a change has been seen twice
  in a row (so a writer that replaces the certificate and then the key is never caught
  half-way), checks the new pair completely and only then loads it into the live
  contexts with `load_cert_chain`. An `SSLContext` used by a server hands its current
  certificate to each new connection, so new handshakes present the new certificate
  without a restart and established connections are untouched.
- A new pair that fails any check (unreadable, key mismatch, expired, not yet valid,
  not signed by the CA) is never loaded: the old one stays in use, the failure is
  logged and counted, and the reloader tries again only when the files change again.
- The checked bytes are what gets loaded: they are written to a private temporary file
  for `load_cert_chain` (which only takes paths), so a file that changes between the
  check and the load cannot slip an unchecked certificate in.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("raftkv.tls")

DEFAULT_RELOAD_INTERVAL = 5.0
"""Seconds between two looks at the certificate files. The kubelet refreshes mounted
Secrets about once a minute, so a few seconds adds little to a rotation."""

_MAX_CHAIN_DEPTH = 8


class CertFileError(ValueError):
    """A certificate, key or CA file that cannot be used; `str()` is one line that
    names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


# -- reading and checking files ------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CertFileError(path, f"{what} file does not exist") from None
    except PermissionError:
        raise CertFileError(path, f"{what} file cannot be read (permission denied)") from None
    except IsADirectoryError:
        raise CertFileError(path, f"{what} file is a directory") from None
    except OSError as exc:
        raise CertFileError(path, f"{what} file cannot be read ({exc.strerror})") from None
    if not data.strip():
        raise CertFileError(path, f"{what} file is empty")
    return data


def _certificates(path: Path, data: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertFileError(path, f"{what} file holds no PEM certificate") from None
    if not certs:
        raise CertFileError(path, f"{what} file holds no PEM certificate")
    return certs


def _private_key(path: Path, data: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertFileError(
            path, "key file is encrypted; raftkv needs an unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertFileError(path, f"key file holds no usable PEM private key ({exc})") from None


def _spki(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        return b""
    out: bytes = public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return out


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chains_to(
    leaf: x509.Certificate, extra: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> bool:
    """Whether `leaf` is signed by one of `roots`, directly or through the
    intermediates in `extra` (the rest of the certificate file)."""
    current = leaf
    for _ in range(_MAX_CHAIN_DEPTH):
        if any(_issued_by(current, root) for root in roots):
            return True
        parent = next((c for c in extra if c is not current and _issued_by(current, c)), None)
        if parent is None:
            return False
        current = parent
    return False


def _utc(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class CertFiles:
    """The files of one identity: certificate (chain), its key, and the CA that the
    certificate must chain to (None: no issuer check)."""

    cert: Path
    key: Path
    ca: Path | None = None


@dataclass(frozen=True, slots=True)
class LoadedCert:
    """A checked certificate/key pair, as bytes, with what the metrics report."""

    files: CertFiles
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes | None
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime


def check_cert(files: CertFiles, now: dt.datetime | None = None) -> LoadedCert:
    """Read and check a certificate, its key and (if given) its CA; `CertFileError`
    naming the file for the first problem found."""
    now = now or dt.datetime.now(dt.UTC)
    cert_pem = _read(files.cert, "certificate")
    key_pem = _read(files.key, "key")
    ca_pem = _read(files.ca, "CA") if files.ca is not None else None
    chain = _certificates(files.cert, cert_pem, "certificate")
    leaf = chain[0]
    key = _private_key(files.key, key_pem)
    if _spki(key.public_key()) != _spki(leaf.public_key()):
        raise CertFileError(files.key, f"key does not match the certificate in {files.cert}")
    if now < leaf.not_valid_before_utc:
        raise CertFileError(
            files.cert, f"certificate is not valid until {_utc(leaf.not_valid_before_utc)}"
        )
    if now > leaf.not_valid_after_utc:
        raise CertFileError(files.cert, f"certificate expired on {_utc(leaf.not_valid_after_utc)}")
    if files.ca is not None and ca_pem is not None:
        roots = _certificates(files.ca, ca_pem, "CA")
        if not _chains_to(leaf, chain[1:], roots):
            raise CertFileError(files.cert, f"certificate is not signed by the CA in {files.ca}")
    loaded = LoadedCert(
        files=files,
        cert_pem=cert_pem,
        key_pem=key_pem,
        ca_pem=ca_pem,
        serial=leaf.serial_number,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
    )
    # Last word to OpenSSL (e.g. a key type it does not support), on a throwaway context.
    try:
        load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), loaded)
    except ssl.SSLError as exc:
        raise CertFileError(files.cert, f"OpenSSL refused the certificate or key ({exc})") from None
    return loaded


def read_ca(path: Path) -> bytes:
    """A CA file's bytes, checked to hold at least one PEM certificate."""
    data = _read(path, "CA")
    _certificates(path, data, "CA")
    return data


@contextlib.contextmanager
def _private_files(*blobs: bytes) -> Iterator[list[str]]:
    with tempfile.TemporaryDirectory(prefix="raftkv-tls-") as tmp:  # mode 0700
        paths = []
        for i, blob in enumerate(blobs):
            path = os.path.join(tmp, f"{i}.pem")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
            paths.append(path)
        yield paths


def load_into(ctx: ssl.SSLContext, loaded: LoadedCert) -> None:
    """Install `loaded` as the context's certificate and key, in place: connections
    made from now on present it."""
    with _private_files(loaded.cert_pem, loaded.key_pem) as (cert_path, key_path):
        ctx.load_cert_chain(cert_path, key_path)


def _trust(ctx: ssl.SSLContext, ca_pem: bytes) -> None:
    ctx.load_verify_locations(cadata=ca_pem.decode("ascii", errors="replace"))


# -- contexts ------------------------------------------------------------------------------


def server_context(loaded: LoadedCert, client_ca: bytes | None) -> ssl.SSLContext:
    """A server context presenting `loaded`; with `client_ca`, clients must present a
    certificate signed by it (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_into(ctx, loaded)
    if client_ca is not None:
        _trust(ctx, client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(ca: bytes | None = None, identity: LoadedCert | None = None) -> ssl.SSLContext:
    """A client context that verifies servers against `ca` (the system's CAs when
    None) and host names, and presents `identity` when a server asks for one."""
    ctx = ssl.create_default_context(cadata=None if ca is None else ca.decode("ascii", "replace"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if identity is not None:
        load_into(ctx, identity)
    return ctx


def client_ssl_context(
    cacert: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """The context of `raftkv.client` and the CLI (`--cacert`, `--cert`, `--key`, as
    etcdctl has them): `CertFileError` for a bad file, ValueError for a cert without
    its key."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate and its key go together (--cert with --key)")
    ca = read_ca(Path(cacert)) if cacert is not None else None
    identity = None
    if cert is not None and key is not None:
        identity = check_cert(CertFiles(Path(cert), Path(key)))
    return client_context(ca, identity)


# -- metrics -------------------------------------------------------------------------------


class TLSMetrics:
    """`raftkv_certificate_expiry_timestamp_seconds{kind}` (kind = server | peer) and
    `raftkv_certificate_reload_failures_total{kind}`, in the member's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.expiry = Gauge(
            "raftkv_certificate_expiry_timestamp_seconds",
            "Expiry (notAfter, Unix time) of the certificate in use",
            ["kind"],
            registry=registry,
        )
        self.reload_failures = Counter(
            "raftkv_certificate_reload_failures_total",
            "Changed certificate files that were refused (the old certificate stays in use)",
            ["kind"],
            registry=registry,
        )
        self.reloads = Counter(
            "raftkv_certificate_reloads_total",
            "Certificates replaced in place after their files changed",
            ["kind"],
            registry=registry,
        )


# -- reloading -----------------------------------------------------------------------------


class Poll(Enum):
    """What one `CertReloader.poll()` found and did."""

    UNCHANGED = "unchanged"
    SETTLING = "settling"
    """Files changed since the last look; checked on the next look if they stay put."""
    RELOADED = "reloaded"
    FAILED = "failed"


_Stamp = tuple[tuple[str, int, int, int, int] | tuple[str, str], ...]


def _stamp(paths: Sequence[Path]) -> _Stamp:
    out: list[tuple[str, int, int, int, int] | tuple[str, str]] = []
    for p in paths:
        try:
            real = os.path.realpath(p)
            st = os.stat(real)
        except OSError as exc:
            out.append((str(p), type(exc).__name__))
            continue
        out.append((real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class CertReloader:
    """Keeps `contexts` presenting the current pair of `files`; call `poll()` now and
    then (see the module docstring for the rules)."""

    def __init__(
        self,
        kind: str,
        loaded: LoadedCert,
        contexts: Sequence[ssl.SSLContext],
        metrics: TLSMetrics | None = None,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.kind = kind
        self.files = loaded.files
        self.current = loaded
        self.contexts = list(contexts)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.failures = 0
        self.last_error: CertFileError | None = None
        paths = [self.files.cert, self.files.key]
        if self.files.ca is not None:
            paths.append(self.files.ca)
        self._paths = paths
        self._applied = _stamp(paths)
        self._seen = self._applied
        self.metrics: TLSMetrics | None = None
        if metrics is not None:
            self.attach(metrics)

    def attach(self, metrics: TLSMetrics) -> None:
        self.metrics = metrics
        metrics.expiry.labels(kind=self.kind).set(self.current.not_after.timestamp())
        metrics.reload_failures.labels(kind=self.kind)
        metrics.reloads.labels(kind=self.kind)

    def poll(self) -> Poll:
        stamp = _stamp(self._paths)
        if stamp == self._applied:
            self._seen = stamp
            return Poll.UNCHANGED
        if stamp != self._seen:
            self._seen = stamp
            return Poll.SETTLING
        # Changed, and unchanged since the last look: check it, once.
        self._applied = stamp
        try:
            loaded = check_cert(self.files, self.clock())
            if (loaded.cert_pem, loaded.key_pem, loaded.ca_pem) == (
                self.current.cert_pem,
                self.current.key_pem,
                self.current.ca_pem,
            ):
                return Poll.UNCHANGED  # touched or rewritten with the same bytes
            # check_cert loaded the pair into a throwaway context already, so these
            # loads do not fail half-way in practice; they are still guarded below.
            for ctx in self.contexts:
                load_into(ctx, loaded)
                if loaded.ca_pem is not None and loaded.ca_pem != self.current.ca_pem:
                    # Trust is only ever added in place: a new CA is trusted next to the
                    # old one until restart, so peers mid-rotation still get in.
                    _trust(ctx, loaded.ca_pem)
        except CertFileError as exc:
            return self._failed(exc)
        except (ssl.SSLError, OSError) as exc:
            return self._failed(CertFileError(self.files.cert, f"cannot be loaded ({exc})"))
        if loaded.cert_pem == self.current.cert_pem and loaded.key_pem == self.current.key_pem:
            self.current = loaded
            return Poll.UNCHANGED
        self.current = loaded
        self.last_error = None
        log.info(
            "%s certificate reloaded from %s: serial %x, valid until %s",
            self.kind,
            self.files.cert,
            loaded.serial,
            _utc(loaded.not_after),
        )
        if self.metrics is not None:
            self.metrics.expiry.labels(kind=self.kind).set(loaded.not_after.timestamp())
            self.metrics.reloads.labels(kind=self.kind).inc()
        return Poll.RELOADED

    def _failed(self, exc: CertFileError) -> Poll:
        self.failures += 1
        self.last_error = exc
        log.error(
            "%s certificate not reloaded, keeping serial %x in use: %s",
            self.kind,
            self.current.serial,
            exc,
        )
        if self.metrics is not None:
            self.metrics.reload_failures.labels(kind=self.kind).inc()
        return Poll.FAILED


async def watch(reloaders: Sequence[CertReloader], interval: float) -> None:
    """Poll every reloader every `interval` seconds until cancelled. A reloader that
    raises something unexpected is logged and polled again next time: a bug here must
    not take the member down with it."""
    while True:
        await asyncio.sleep(interval)
        for r in reloaders:
            try:
                r.poll()
            except Exception:
                log.exception("checking the %s certificate files failed", r.kind)
