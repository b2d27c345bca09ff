from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One three-member cluster shared by a module's tests (starting one costs ~2 s)."""
    with LocalCluster(tmp_path_factory.mktemp("cluster"), 3) as c:
        yield c


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, 3, snapshot_count=50)
    try:
        yield c
    finally:
        c.close()
