"""Real member processes for the coordination tests: one three-member cluster shared
by a module's tests, and a fresh one for tests that kill members."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.harness import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("coord"), 3) as c:
        yield c


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Three members of its own, for a test that kills some."""
    with LocalCluster(tmp_path, 3) as c:
        yield c
