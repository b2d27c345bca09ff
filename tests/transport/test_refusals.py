"""The peer port refuses strangers, removed members and garbage, and survives them."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from raftkv.transport import HEALTH_PATH, STREAM_PATH, PeerAuth
from raftkv.wire import encode_messages

from .harness import AUTH, FAST, Cluster, app, eventually

pytestmark = pytest.mark.asyncio


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}{STREAM_PATH}"


async def handshake_status(port: int, headers: dict[str, str]) -> int:
    try:
        ws = await connect(ws_url(port), additional_headers=headers, proxy=None)
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


async def test_refusals_are_http_statuses_before_any_websocket(cluster: Cluster) -> None:
    b = await cluster.add(2)
    b.removed_senders.add(9)
    port = b.server.port
    good = AUTH.headers(1, 2)
    assert await handshake_status(port, good) == 101
    assert await handshake_status(port, {}) == 403
    assert await handshake_status(port, {**good, "x-raftkv-peer-secret": "nope"}) == 403
    assert await handshake_status(port, {**good, "x-raftkv-cluster-id": "other"}) == 403
    assert await handshake_status(port, {**good, "x-raftkv-from": "zero"}) == 400
    assert await handshake_status(port, AUTH.headers(9, 2)) == 410
    assert await handshake_status(port, AUTH.headers(1, 3)) == 409
    # A stranger learns nothing about membership: no 410 without the secret.
    assert await handshake_status(port, {**AUTH.headers(9, 2), "x-raftkv-peer-secret": "x"}) == 403


async def test_wrong_secret_is_refused_and_nothing_is_delivered(cluster: Cluster) -> None:
    a = await cluster.add(1, auth=PeerAuth(AUTH.cluster_id, "not-the-secret"))
    b = await cluster.add(2)
    a.transport.set_peer(2, b.url)
    a.transport.send([app(1, 2, 1)])
    await eventually(lambda: 2 in a.unreachable, "refusal reported as unreachable")
    assert b.received == []
    assert b.transport.incoming_peers() == []


async def test_other_cluster_is_refused(cluster: Cluster) -> None:
    a = await cluster.add(1, auth=PeerAuth("another-cluster", AUTH.secret))
    b = await cluster.add(2)
    a.transport.set_peer(2, b.url)
    a.transport.send([app(1, 2, 1)])
    await eventually(lambda: 2 in a.unreachable, "refusal reported as unreachable")
    assert b.received == []
    async with httpx.AsyncClient(trust_env=False) as client:
        r = await client.post(
            f"{b.url}/raft/snapshot", headers=PeerAuth("another-cluster", AUTH.secret).headers(1, 2)
        )
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"


async def test_removed_sender_gets_410_and_learns_it(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    b.removed_senders.add(1)
    cluster.connect_all()
    a.transport.send([app(1, 2, 1)])
    await eventually(lambda: a.removed == 1, "on_removed on the removed member")
    assert b.received == []
    # b's own stream to a is unaffected: a still hears from the cluster.
    b.transport.send([app(2, 1, 1)])
    await eventually(lambda: len(a.received) == 1, "b -> a")


async def test_sender_removed_mid_stream_is_told_in_band(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    a.transport.send([app(1, 2, 1)])
    await eventually(lambda: len(b.received) == 1, "before removal")
    b.removed_senders.add(1)
    a.transport.send([app(1, 2, 2)])
    await eventually(lambda: a.removed == 1, "on_removed after the in-band close")
    assert [m.index for m in b.received] == [1]


async def test_garbage_frame_closes_only_that_stream(cluster: Cluster) -> None:
    b = await cluster.add(2)
    c = await cluster.add(3)
    c.transport.set_peer(2, b.url)
    ws = await connect(ws_url(b.server.port), additional_headers=AUTH.headers(1, 2), proxy=None)
    await ws.send(b"\x01M\xc1 definitely not msgpack")
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1008
    c.transport.send([app(3, 2, 7)])  # another peer is still served
    await eventually(lambda: [m.index for m in b.received] == [7], "other peer's message")
    assert b.transport.inbound.frames_rejected == 1


async def test_text_frame_closes_the_stream(cluster: Cluster) -> None:
    b = await cluster.add(2)
    ws = await connect(ws_url(b.server.port), additional_headers=AUTH.headers(1, 2), proxy=None)
    await ws.send("hello")
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1003


async def test_misaddressed_messages_are_dropped(cluster: Cluster) -> None:
    b = await cluster.add(2)
    ws = await connect(ws_url(b.server.port), additional_headers=AUTH.headers(1, 2), proxy=None)
    # Claims to come from 5 on a stream authenticated as 1; and one for member 3.
    await ws.send(encode_messages([app(5, 2, 1), app(1, 3, 2), app(1, 2, 3)]))
    await eventually(lambda: len(b.received) == 1, "the well-addressed one")
    assert b.received[0].index == 3
    await ws.close()


async def test_raw_tcp_garbage_does_not_hurt_the_server(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", b.server.port)
        writer.write(os.urandom(4096))
        await writer.drain()
        async with asyncio.timeout(5):
            await reader.read()  # uvicorn answers 400 (or just closes) and hangs up
        writer.close()
        await writer.wait_closed()
    async with httpx.AsyncClient(trust_env=False) as client:
        r = await client.get(f"{b.url}{HEALTH_PATH}")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "member_id": 2}
    a.transport.set_peer(2, b.url)
    a.transport.send([app(1, 2, 1)])
    await eventually(lambda: len(b.received) == 1, "a stream after the garbage")


async def test_oversized_frame_is_refused_without_crashing(cluster: Cluster) -> None:
    small = replace(FAST, max_receive_frame_bytes=64 << 10, max_frame_bytes=32 << 10)
    b = await cluster.add(2, options=small)
    c = await cluster.add(3)
    c.transport.set_peer(2, b.url)
    ws = await connect(
        ws_url(b.server.port), additional_headers=AUTH.headers(1, 2), proxy=None, max_size=None
    )
    await ws.send(b"\x01M" + b"\x00" * (128 << 10))
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    assert ws.close_code == 1009  # uvicorn enforces ws_max_size from uvicorn_config()
    c.transport.send([app(3, 2, 1)])
    await eventually(lambda: len(b.received) == 1, "other peer still served")
