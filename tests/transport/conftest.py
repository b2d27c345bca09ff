from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from .harness import Cluster


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    """Members a test creates; all transports, then all servers, stopped afterwards,
    and the test fails if anything it started is still running."""
    c = Cluster()
    try:
        yield c
    finally:
        await c.close()
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not leftover, f"tasks left running: {leftover}"
