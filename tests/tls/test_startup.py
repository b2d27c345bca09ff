"""`raftkv serve` refuses to start with a certificate it cannot use, or with URLs whose
scheme contradicts the TLS flags: a non-zero exit and one line that names the file (or
flag) and the problem, never a traceback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from support.members import free_ports, serve_command, spawn_member

from .pki import CA, SecretDir

EXIT_STARTUP = 2


def _run(tmp_path: Path, *flags: str) -> str:
    client, peer = free_ports(2)
    log = tmp_path / "member.log"
    proc = spawn_member(
        serve_command(
            "--name", "m1",
            "--data-dir", str(tmp_path / "data"),
            "--listen-client", f"127.0.0.1:{client}",
            "--listen-peer", f"127.0.0.1:{peer}",
            *flags,
        ),
        log,
    )  # fmt: skip
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    out = log.read_text(errors="replace")
    assert code == EXIT_STARTUP, out
    assert "Traceback" not in out
    return out


class _Files:
    def __init__(self, root: Path) -> None:
        self.ca = CA()
        self.server = SecretDir(root / "server", self.ca, self.ca.issue())
        self.peer = SecretDir(root / "peer", self.ca, self.ca.issue())

    def flags(self, **override: str) -> list[str]:
        values = {
            "--cert-file": str(self.server.cert),
            "--key-file": str(self.server.key),
            "--peer-cert-file": str(self.peer.cert),
            "--peer-key-file": str(self.peer.key),
            "--peer-trusted-ca-file": str(self.peer.ca),
            **override,
        }
        return [x for kv in values.items() for x in kv]


def _one_line(out: str, needle: str) -> None:
    lines = [line for line in out.splitlines() if needle in line]
    assert lines, out
    assert "ERROR" in lines[0]


Case = Callable[[_Files, Path], tuple[list[str], str]]

CASES: dict[str, Case] = {
    "missing certificate": lambda f, tmp: (
        f.flags(**{"--cert-file": str(tmp / "gone.crt")}),
        f"{tmp / 'gone.crt'}: certificate file does not exist",
    ),
    "certificate is a directory": lambda f, tmp: (
        f.flags(**{"--peer-cert-file": str(tmp)}),
        f"{tmp}: certificate file is a directory",
    ),
    "mismatched key": lambda f, tmp: (
        f.flags(**{"--key-file": str(f.peer.key)}),
        f"{f.peer.key}: key does not match the certificate in {f.server.cert}",
    ),
    "expired certificate": lambda f, tmp: (
        _expired(f),
        f"{f.server.cert}: certificate expired on",
    ),
    "peer certificate of another CA": lambda f, tmp: (
        _foreign_peer(f, tmp),
        f"{f.peer.cert}: certificate is not signed by the CA in {f.peer.ca}",
    ),
}


def _expired(f: _Files) -> list[str]:
    f.server.put(f.ca.pem, f.ca.issue(not_after=dt.timedelta(seconds=-5)))
    return f.flags()


def _foreign_peer(f: _Files, tmp: Path) -> list[str]:
    f.peer.put(f.ca.pem, CA("other").issue())
    return f.flags()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_certificate_files_stop_the_start(tmp_path: Path, case: str) -> None:
    files = _Files(tmp_path / "pki")
    flags, message = CASES[case](files, tmp_path)
    out = _run(tmp_path, *flags)
    _one_line(out, message)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--listen-client", "https://127.0.0.1:1"],
            "--listen-client is https:// but --cert-file is not set",
        ),
        (
            ["--advertise-peer-url", "https://127.0.0.1:1"],
            "--advertise-peer-url https://127.0.0.1:1 is https:// but --peer-cert-file is not set",
        ),
        (["--cert-file", "x.crt"], "--cert-file and --key-file go together"),
        (["--client-cert-auth"], "--client-cert-auth needs --trusted-ca-file"),
        (["--peer-cert-file", "p.crt", "--peer-key-file", "p.key"], "peer TLS is mutual"),
    ],
)
def test_flags_that_contradict_each_other_are_usage_errors(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    out = _run(tmp_path, *flags)
    assert message in out


def test_certificates_behind_an_http_url_are_refused(tmp_path: Path) -> None:
    files = _Files(tmp_path / "pki")
    out = _run(tmp_path, *files.flags(), "--advertise-client-url", "http://127.0.0.1:1")
    assert (
        "raftkv serve: --advertise-client-url http://127.0.0.1:1 is http:// but --cert-file "
        "is set: use https://"
    ) in out
