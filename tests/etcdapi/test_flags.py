"""`--listen-etcd` / `--advertise-etcd-url`: on by default beside the client port,
off on request, explicit addresses normalised."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from raftkv.server.config import ServerConfig, parse_listen_etcd
from support.members import free_ports, serve_command, spawn_member
from support.wait import wait_for


def test_default_is_the_client_port_plus_10000() -> None:
    cfg = ServerConfig(name="a", data_dir=Path("a"), client_host="10.0.0.1", client_port=2379)
    assert cfg.etcd_address == ("10.0.0.1", 12379)
    assert cfg.etcd_url == "http://10.0.0.1:12379"


def test_off_and_out_of_range_defaults_serve_nothing() -> None:
    assert ServerConfig(name="a", data_dir=Path("a"), listen_etcd="off").etcd_address is None
    assert ServerConfig(name="a", data_dir=Path("a"), client_port=60000).etcd_address is None
    assert ServerConfig(name="a", data_dir=Path("a"), listen_etcd="off").etcd_url == ""


def test_explicit_address_and_advertised_url() -> None:
    assert parse_listen_etcd("http://0.0.0.0:2000") == "0.0.0.0:2000"
    assert parse_listen_etcd(":2000") == "0.0.0.0:2000"
    assert parse_listen_etcd("OFF") == "off"
    assert parse_listen_etcd("") == ""
    cfg = ServerConfig(
        name="a",
        data_dir=Path("a"),
        listen_etcd="0.0.0.0:2000",
        advertise_etcd_url="http://m1:2000",
    )
    assert cfg.etcd_address == ("0.0.0.0", 2000)
    assert cfg.etcd_url == "http://m1:2000"


@pytest.mark.parametrize("bad", ["unix://h:1", "h:notaport", "h:70000"])
def test_bad_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_listen_etcd(bad)


def _serve(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    client, peer = free_ports(2)
    log = tmp_path / "member.log"
    argv = serve_command(
        "--name", "m1",
        "--data-dir", str(tmp_path / "data"),
        "--listen-client", f"127.0.0.1:{client}",
        "--listen-peer", f"127.0.0.1:{peer}",
        *flags,
    )  # fmt: skip
    return spawn_member(argv, log), log, client


def test_an_explicit_etcd_address_that_is_taken_stops_the_member(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, log, _ = _serve(tmp_path, "--listen-etcd", f"127.0.0.1:{port}")
        try:
            assert proc.wait(timeout=60) == 2
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "cannot serve the etcd API" in log.read_text()


def test_a_taken_default_etcd_port_only_warns(tmp_path: Path) -> None:
    """The derived default (client port + 10000) was not asked for by name: a member
    whose default is taken still serves its native API."""
    for _ in range(20):
        client, peer = free_ports(2)
        if client + 10000 <= 65535:
            break
    else:
        pytest.skip("no free client port whose derived etcd port is a port")
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", client + 10000))
        except OSError:
            pytest.skip("the derived port is in use by someone else")
        taken.listen()
        argv = serve_command(
            "--name", "m1",
            "--data-dir", str(tmp_path / "data"),
            "--listen-client", f"127.0.0.1:{client}",
            "--listen-peer", f"127.0.0.1:{peer}",
            etcd_default=True,
        )  # fmt: skip
        log = tmp_path / "member.log"
        proc = spawn_member(argv, log)
        try:
            wait_for(
                "the member ready",
                lambda: (
                    httpx.get(f"http://127.0.0.1:{client}/readyz", timeout=1).status_code == 200
                ),
                30,
                ignore=httpx.HTTPError,
            )
            assert "etcd API: not served" in log.read_text()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
