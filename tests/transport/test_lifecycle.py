"""start/stop, bounded shutdown, and robustness against the node's own callbacks."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import httpx
import pytest

from raftkv.raft.types import ConfState, Message, MessageType, Snapshot, SnapshotMetadata
from raftkv.transport import Transport

from .harness import AUTH, FAST, Cluster, PeerServer, app, eventually

pytestmark = pytest.mark.asyncio


def blackhole() -> socket.socket:
    """A listening socket nobody accepts on: TCP connects succeed (the kernel's backlog)
    and then nothing is ever answered, like a peer that hangs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def test_stop_is_bounded_with_hanging_peers(cluster: Cluster) -> None:
    opts = replace(FAST, dial_timeout=60.0, snapshot_timeout=60.0, stop_timeout=1.0)
    a = await cluster.add(1, options=opts)
    holes = [blackhole() for _ in range(3)]
    try:
        for i, hole in enumerate(holes, start=2):
            a.transport.set_peer(i, f"http://127.0.0.1:{hole.getsockname()[1]}")
        snap = Snapshot(SnapshotMetadata(10, 1, ConfState((1, 2))), b"\x00" * (8 << 20))
        a.transport.send([app(1, 2, 1), Message(MessageType.SNAP, 2, 1, snapshot=snap)])
        await eventually(lambda: a.transport.snapshots_in_flight() == {2: 1}, "snapshot POST")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await a.transport.stop()
        elapsed = loop.time() - started
    finally:
        for hole in holes:
            hole.close()
    assert elapsed < 1.5, f"stop() took {elapsed:.2f}s"
    assert a.snapshots_sent == []  # no callbacks into a node that is going away
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    # Only the member's own uvicorn server remains (stopped by the fixture).
    assert all("raftkv" not in t.get_name() for t in leftover), leftover


async def test_stop_closes_incoming_streams_and_refuses_new_ones(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    await eventually(lambda: b.transport.incoming_peers() == [1], "a's stream")
    await b.transport.stop()
    assert b.transport.incoming_peers() == []
    await eventually(lambda: 2 in a.unreachable, "a notices")
    b.transport.send([app(2, 1, 1)])  # a no-op once stopped
    with pytest.raises(RuntimeError):
        await b.transport.start()


async def test_a_raising_callback_does_not_break_the_stream(cluster: Cluster) -> None:
    a = await cluster.add(1)
    got: list[int] = []

    def flaky(batch: list[Message]) -> None:
        if not got:
            got.append(-1)
            raise RuntimeError("node bug")
        got.extend(m.index for m in batch)

    b = Transport(2, AUTH, flaky, lambda _: None, lambda _p, _ok: None, options=FAST)
    server = PeerServer(b)
    await server.start()
    await b.start()
    try:
        a.transport.set_peer(2, server.url)
        a.transport.send([app(1, 2, 1)])
        await eventually(lambda: got == [-1], "first (raising) delivery")
        a.transport.send([app(1, 2, 2)])
        await eventually(lambda: got == [-1, 2], "the stream survived")
    finally:
        await b.stop()
        await server.stop()


async def test_set_peer_validates_and_ignores_self(cluster: Cluster) -> None:
    a = await cluster.add(1)
    with pytest.raises(ValueError):
        a.transport.set_peer(2, "tcp://10.0.0.2:2380")
    a.transport.set_peer(1, "http://127.0.0.1:1")
    assert a.transport.peers() == {}
    with pytest.raises(ValueError):
        Transport(0, AUTH, lambda _: None, lambda _: None, lambda _p, _ok: None)


async def test_health_endpoint_needs_no_auth(cluster: Cluster) -> None:
    b = await cluster.add(2)
    async with httpx.AsyncClient(trust_env=False) as client:
        r = await client.get(f"{b.url}/raft/health")
        assert r.json() == {"ok": True, "member_id": 2}
        r = await client.get(f"{b.url}/docs")
        assert r.status_code == 404  # no docs/OpenAPI on the peer port
