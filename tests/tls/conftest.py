from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .members import TLSCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSCluster]:
    """Three TLS members (client TLS with --client-cert-auth, peer mTLS) shared by a
    module's tests that do not change certificates."""
    c = TLSCluster(tmp_path_factory.mktemp("tls"), 3, client_cert_auth=True)
    try:
        c.start_all()
        c.wait_ready()
        yield c
    finally:
        c.close()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[TLSCluster]:
    """A cluster of its own, for tests that rotate certificates; started by the test."""
    c = TLSCluster(tmp_path, 3, client_cert_auth=True)
    try:
        yield c
    finally:
        c.close()
