"""The certificate checks and the in-place reload, in process: every refusal names the
file and the problem, and a bad new pair never replaces the one in use."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry

from raftkv.tls import (
    CertFileError,
    CertFiles,
    CertReloader,
    Poll,
    TLSMetrics,
    check_cert,
    client_context,
    client_ssl_context,
    server_context,
)

from .handshake import memory_handshake
from .pki import CA, Issued, SecretDir


def _write(tmp: Path, issued: Issued, ca: CA) -> CertFiles:
    (tmp / "c.pem").write_bytes(issued.cert_pem)
    (tmp / "k.pem").write_bytes(issued.key_pem)
    (tmp / "ca.pem").write_bytes(ca.pem)
    return CertFiles(tmp / "c.pem", tmp / "k.pem", tmp / "ca.pem")


def test_a_good_pair_is_accepted_with_its_serial_and_expiry(tmp_path: Path) -> None:
    ca = CA()
    issued = ca.issue()
    loaded = check_cert(_write(tmp_path, issued, ca))
    assert loaded.serial == issued.serial
    assert loaded.not_after > dt.datetime.now(dt.UTC)


def _error(files: CertFiles) -> CertFileError:
    with pytest.raises(CertFileError) as exc:
        check_cert(files)
    return exc.value


def test_missing_files_are_named(tmp_path: Path) -> None:
    files = _write(tmp_path, CA().issue(), CA())
    err = _error(CertFiles(tmp_path / "nope.pem", files.key))
    assert str(err) == f"{tmp_path / 'nope.pem'}: certificate file does not exist"
    err = _error(CertFiles(files.cert, tmp_path / "nokey.pem"))
    assert err.path == tmp_path / "nokey.pem"
    assert "does not exist" in str(err)


def test_a_directory_an_empty_file_and_garbage_are_refused(tmp_path: Path) -> None:
    files = _write(tmp_path, CA().issue(), CA())
    assert "is a directory" in str(_error(CertFiles(tmp_path, files.key)))
    (tmp_path / "empty.pem").write_bytes(b"")
    assert "is empty" in str(_error(CertFiles(tmp_path / "empty.pem", files.key)))
    (tmp_path / "junk.pem").write_bytes(b"not a certificate\n")
    assert "holds no PEM certificate" in str(_error(CertFiles(tmp_path / "junk.pem", files.key)))
    assert "no usable PEM private key" in str(_error(CertFiles(files.cert, tmp_path / "junk.pem")))


def test_an_encrypted_key_is_refused(tmp_path: Path) -> None:
    files = _write(tmp_path, CA().issue(), CA())
    key = serialization.load_pem_private_key(files.key.read_bytes(), None)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    assert (
        str(_error(files)) == f"{files.key}: key file is encrypted; raftkv needs an unencrypted key"
    )


def test_a_key_of_another_certificate_is_refused(tmp_path: Path) -> None:
    ca = CA()
    files = _write(tmp_path, ca.issue(), ca)
    (tmp_path / "other.pem").write_bytes(ca.issue().key_pem)
    err = _error(CertFiles(files.cert, tmp_path / "other.pem"))
    assert (
        str(err) == f"{tmp_path / 'other.pem'}: key does not match the certificate in {files.cert}"
    )


def test_expired_and_not_yet_valid_certificates_are_refused(tmp_path: Path) -> None:
    ca = CA()
    expired = ca.issue(not_before=dt.timedelta(days=-3), not_after=dt.timedelta(days=-1))
    err = _error(_write(tmp_path, expired, ca))
    assert err.path == tmp_path / "c.pem"
    assert "certificate expired on" in str(err)
    future = ca.issue(not_before=dt.timedelta(days=1), not_after=dt.timedelta(days=3))
    assert "is not valid until" in str(_error(_write(tmp_path, future, ca)))


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    files = _write(tmp_path, CA("other").issue(), CA())
    assert str(_error(files)) == (
        f"{files.cert}: certificate is not signed by the CA in {files.ca}"
    )


def test_client_context_needs_cert_and_key_together(tmp_path: Path) -> None:
    files = _write(tmp_path, CA().issue(), CA())
    with pytest.raises(ValueError, match="go together"):
        client_ssl_context(cert=files.cert)
    with pytest.raises(CertFileError, match="does not exist"):
        client_ssl_context(cacert=tmp_path / "nope.pem")


class _Member:
    """A server context and a reloader over a Secret-like directory."""

    def __init__(self, root: Path) -> None:
        self.ca = CA()
        self.first = self.ca.issue("server")
        self.secret = SecretDir(root, self.ca, self.first)
        loaded = check_cert(CertFiles(self.secret.cert, self.secret.key, self.secret.ca))
        self.server = server_context(loaded, None)
        self.client = client_context(self.ca.pem)
        self.registry = CollectorRegistry()
        self.reloader = CertReloader("server", loaded, [self.server], TLSMetrics(self.registry))

    def serial(self) -> int:
        return memory_handshake(self.server, self.client)

    def metric(self, name: str) -> float | None:
        return self.registry.get_sample_value(name, {"kind": "server"})


def test_a_new_pair_is_used_by_new_handshakes_after_it_settles(tmp_path: Path) -> None:
    m = _Member(tmp_path / "secret")
    assert m.serial() == m.first.serial
    assert m.reloader.poll() is Poll.UNCHANGED
    second = m.ca.issue("server", not_after=dt.timedelta(days=9))
    m.secret.put(m.ca.pem, second)
    # The first look only notes the change: a writer may still be mid-way.
    assert m.reloader.poll() is Poll.SETTLING
    assert m.serial() == m.first.serial
    assert m.reloader.poll() is Poll.RELOADED
    assert m.serial() == second.serial
    assert m.reloader.poll() is Poll.UNCHANGED
    assert m.metric("raftkv_certificate_reloads_total") == 1
    assert m.metric("raftkv_certificate_expiry_timestamp_seconds") == pytest.approx(
        m.reloader.current.not_after.timestamp()
    )
    assert m.metric("raftkv_certificate_reload_failures_total") == 0


@pytest.mark.parametrize("problem", ["mismatched key", "expired", "other CA", "garbage"])
def test_a_bad_new_pair_keeps_the_old_one_and_counts_a_failure(
    tmp_path: Path, problem: str
) -> None:
    m = _Member(tmp_path / "secret")
    expiry = m.metric("raftkv_certificate_expiry_timestamp_seconds")
    if problem == "mismatched key":
        m.secret.put(m.ca.pem, m.ca.issue(), key_pem=m.ca.issue().key_pem)
    elif problem == "expired":
        m.secret.put(m.ca.pem, m.ca.issue(not_after=dt.timedelta(seconds=-1)))
    elif problem == "other CA":
        m.secret.put(m.ca.pem, CA("other").issue())
    else:
        m.secret.put(m.ca.pem, Issued(b"garbage", b"garbage", 0))
    assert m.reloader.poll() is Poll.SETTLING
    assert m.reloader.poll() is Poll.FAILED
    assert m.reloader.last_error is not None
    assert str(m.reloader.last_error).startswith(str(tmp_path / "secret"))
    assert m.serial() == m.first.serial
    assert m.metric("raftkv_certificate_reload_failures_total") == 1
    assert m.metric("raftkv_certificate_expiry_timestamp_seconds") == expiry
    # Tried once per change: the same bad files are not retried (nor recounted).
    assert m.reloader.poll() is Poll.UNCHANGED
    assert m.metric("raftkv_certificate_reload_failures_total") == 1
    # A good pair after the bad one is taken.
    good = m.ca.issue()
    m.secret.put(m.ca.pem, good)
    m.reloader.poll()
    assert m.reloader.poll() is Poll.RELOADED
    assert m.serial() == good.serial


def test_files_vanishing_keep_the_old_pair(tmp_path: Path) -> None:
    m = _Member(tmp_path / "secret")
    (tmp_path / "secret" / "..data").unlink()
    assert m.reloader.poll() is Poll.SETTLING
    assert m.reloader.poll() is Poll.FAILED
    assert "does not exist" in str(m.reloader.last_error)
    assert m.serial() == m.first.serial


def test_mutual_tls_refuses_a_client_of_another_ca(tmp_path: Path) -> None:
    ca = CA()
    loaded = check_cert(_write(tmp_path, ca.issue(), ca))
    server = server_context(loaded, ca.pem)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    other_ca = CA("other")
    other = check_cert(_write(stranger, other_ca.issue(), other_ca))
    with pytest.raises(ssl.SSLError):
        memory_handshake(server, client_context(ca.pem, other))
    with pytest.raises(ssl.SSLError):
        memory_handshake(server, client_context(ca.pem, None))
    assert memory_handshake(server, client_context(ca.pem, loaded)) == loaded.serial


def test_the_same_bytes_written_again_are_not_a_reload(tmp_path: Path) -> None:
    m = _Member(tmp_path / "secret")
    m.secret.put(m.ca.pem, m.first)  # a kubelet resync: new directory, same contents
    assert m.reloader.poll() is Poll.SETTLING
    assert m.reloader.poll() is Poll.UNCHANGED
    assert m.metric("raftkv_certificate_reloads_total") == 0
    assert m.metric("raftkv_certificate_reload_failures_total") == 0
