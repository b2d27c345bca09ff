"""Fixtures of in-process members (see harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from .harness import InProcessCluster, InProcessMember, start_cluster, stop_cluster


@pytest_asyncio.fixture
async def cluster3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[InProcessCluster]:
    c = await start_cluster(tmp_path, monkeypatch, 3)
    try:
        await c.leader()
        yield c
    finally:
        await stop_cluster(c)


@pytest_asyncio.fixture
async def single(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[InProcessMember]:
    c = await start_cluster(tmp_path, monkeypatch, 1)
    try:
        yield await c.leader()
    finally:
        await stop_cluster(c)
