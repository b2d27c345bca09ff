"""Message streams between real transports: batching, per-peer order, reconnection."""

from __future__ import annotations

from dataclasses import replace

import pytest

from raftkv.raft.types import Message, MessageType

from .harness import FAST, Cluster, app, eventually

pytestmark = pytest.mark.asyncio


async def test_two_members_exchange_batches_both_ways_in_order(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    for i in range(1, 201):
        # Many small sends, as a node loop would make: one per Ready.
        a.transport.send([app(1, 2, i), app(1, 2, i + 1000)])
        b.transport.send([app(2, 1, i)])
    await eventually(lambda: len(b.received) == 400, "a -> b")
    await eventually(lambda: len(a.received) == 200, "b -> a")
    expected = [x for i in range(1, 201) for x in (i, i + 1000)]
    assert [m.index for m in b.received] == expected
    assert [m.index for m in a.received] == list(range(1, 201))
    assert all(m.to == 2 and m.sender == 1 for m in b.received)


async def test_three_members_keep_per_peer_order(cluster: Cluster) -> None:
    members = [await cluster.add(i) for i in (1, 2, 3)]
    cluster.connect_all()
    for i in range(1, 301):
        for m in members:
            m.transport.send([app(m.id, peer.id, i) for peer in members if peer is not m])
    for m in members:
        await eventually(lambda m=m: len(m.received) == 600, f"member {m.id}")  # type: ignore[misc]
        for peer in members:
            if peer is not m:
                assert [x.index for x in m.from_(peer.id)] == list(range(1, 301))


async def test_big_batch_of_a_thousand_appends_arrives_whole(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    batch = [app(1, 2, i, payload=bytes([i % 251]) * 100) for i in range(1, 1001)]
    a.transport.send(batch)
    await eventually(lambda: len(b.received) == 1000, "1000 appends")
    assert [m.index for m in b.received] == list(range(1, 1001))
    assert b.received[7].entries == batch[7].entries
    # One send() becomes one frame (or very few): batching, not a frame per message.
    assert len(b.batches) <= 2


async def test_oversized_batches_are_split_into_frames_in_order(cluster: Cluster) -> None:
    a = await cluster.add(1, options=replace(FAST, max_frame_bytes=64 << 10))
    b = await cluster.add(2)
    cluster.connect_all()
    a.transport.send([app(1, 2, i, payload=b"x" * 1000) for i in range(1, 1001)])
    await eventually(lambda: len(b.received) == 1000, "split batch")
    assert [m.index for m in b.received] == list(range(1, 1001))
    assert len(b.batches) >= 1000 * 1000 // (64 << 10)


async def test_stream_reconnects_after_the_receiver_restarts(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    a.transport.send([app(1, 2, 1)])
    await eventually(lambda: len(b.received) == 1, "first message")

    await b.server.stop()
    await eventually(lambda: 2 in a.unreachable, "on_unreachable(2)")
    a.transport.send([app(1, 2, 2), app(1, 2, 3)])  # queued while b is down
    await eventually(lambda: not a.transport.peer_stats()[0].connected, "a notices")

    await b.server.start()
    a.transport.send([app(1, 2, 4)])
    await eventually(lambda: [m.index for m in b.received] == [1, 2, 3, 4], "after restart")
    assert a.transport.peer_stats()[0].connected


async def test_queue_is_bounded_while_the_peer_is_down(cluster: Cluster) -> None:
    a = await cluster.add(1, options=replace(FAST, max_queue=10))
    b = await cluster.add(2, serve=False)  # its port refuses connections for now
    a.transport.set_peer(2, b.url)
    a.transport.send([app(1, 2, i) for i in range(1, 101)])
    stats = a.transport.peer_stats()[0]
    assert (stats.queued, stats.dropped) == (10, 90)
    await eventually(lambda: 2 in a.unreachable, "on_unreachable while down")

    await b.server.start()
    await eventually(lambda: len(b.received) == 10, "the newest ten")
    assert [m.index for m in b.received] == list(range(91, 101))


async def test_messages_to_unknown_peers_are_dropped(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    a.transport.send([app(1, 7, 1), app(1, 2, 2)])
    await eventually(lambda: len(b.received) == 1, "the known peer's message")
    assert b.received[0].index == 2


async def test_removed_peer_gets_nothing_more(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    a.transport.send([app(1, 2, 1)])
    await eventually(lambda: len(b.received) == 1, "first")
    a.transport.remove_peer(2)
    a.transport.send([app(1, 2, 2)])
    await eventually(lambda: b.transport.incoming_peers() == [], "stream closed")
    assert len(b.received) == 1


async def test_set_peer_retargets_to_a_new_address(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    b2 = await cluster.add(3)  # stands in for member 2 at its new address
    a.transport.set_peer(2, b.url)
    a.transport.send([app(1, 2, 1)])
    await eventually(lambda: len(b.received) == 1, "old address")
    # 3's transport answers 409 to a stream meant for member 2: a stale URL is caught.
    a.transport.set_peer(2, b2.url)
    a.transport.send([app(1, 2, 2)])
    await eventually(lambda: a.unreachable.count(2) >= 1, "409 reported as unreachable")
    assert b2.received == []
    a.transport.set_peer(2, b.url)
    await eventually(lambda: [m.index for m in b.received] == [1, 2], "back at the real one")


async def test_rtt_is_observed_per_peer(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    await eventually(lambda: len(a.rtts) >= 3 and len(b.rtts) >= 3, "a few pings")
    assert {p for p, _ in a.rtts} == {2}
    assert all(0 < s < 1 for _, s in a.rtts)
    assert a.transport.peer_stats()[0].last_rtt is not None


async def test_heartbeat_round_trip(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    b.transport.send([])
    for i in range(20):
        a.transport.send([Message(MessageType.HEARTBEAT, 2, 1, term=1, commit=i)])
        await eventually(lambda i=i: len(b.received) == i + 1, "heartbeat")  # type: ignore[misc]
        b.transport.send([Message(MessageType.HEARTBEAT_RESP, 1, 2, term=1)])
        await eventually(lambda i=i: len(a.received) == i + 1, "response")  # type: ignore[misc]
