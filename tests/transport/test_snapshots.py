"""Snapshot transfer: chunked, verified before delivery, refused when it does not verify."""

from __future__ import annotations

import os
from dataclasses import replace

import httpx
import pytest

import raftkv.transport.snapshot as snapshot_mod
from raftkv.raft.types import ConfState, Message, MessageType, Snapshot, SnapshotMetadata
from raftkv.transport.framing import encode_snapshot_envelope
from raftkv.transport.snapshot import ENVELOPE_HEADER, SNAPSHOT_PATH, send_snapshot
from raftkv.wire import encode_snapshot

from .harness import AUTH, FAST, Cluster, app, eventually

pytestmark = pytest.mark.asyncio


def snap_msg(sender: int, to: int, data: bytes, index: int = 1000) -> Message:
    snap = Snapshot(SnapshotMetadata(index, 7, ConfState(voters=(1, 2, 3))), data)
    return Message(MessageType.SNAP, to, sender, term=7, snapshot=snap)


@pytest.fixture
def data() -> bytes:
    return os.urandom(5 << 20)


async def test_snapshot_of_a_few_megabytes_arrives_intact(cluster: Cluster, data: bytes) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    msg = snap_msg(1, 2, data)
    a.transport.send([app(1, 2, 1), msg, app(1, 2, 2)])
    await eventually(lambda: a.snapshots_sent == [(2, True)], "on_snapshot_sent(2, True)")
    snaps = [m for m in b.received if m.type is MessageType.SNAP]
    assert len(snaps) == 1
    got = snaps[0]
    assert got.snapshot == msg.snapshot
    assert (got.term, got.sender, got.to) == (7, 1, 2)
    # The SNAP took the snapshot path; the appends around it still came by stream.
    await eventually(lambda: len(b.received) == 3, "the appends")
    assert b.transport.inbound.snapshots_received == 1


async def test_snapshot_body_is_streamed_in_chunks(data: bytes) -> None:
    seen: list[int] = []

    class Recording(httpx.AsyncBaseTransport):
        # httpx.MockTransport reads the whole body before the handler runs; a
        # transport sees the request stream chunk by chunk, as the socket would.
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            assert isinstance(request.stream, httpx.AsyncByteStream)
            async for chunk in request.stream:
                seen.append(len(chunk))
            return httpx.Response(204)

    async with httpx.AsyncClient(transport=Recording()) as client:
        status = await send_snapshot(
            client, "http://peer:1", AUTH.headers(1, 2), snap_msg(1, 2, data), 256 << 10
        )
    assert status == 204
    assert sum(seen) == len(encode_snapshot(snap_msg(1, 2, data).snapshot or Snapshot()))
    assert len(seen) > 10
    assert max(seen) == 256 << 10


async def test_corrupted_snapshot_is_refused_and_not_delivered(
    cluster: Cluster, data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def corrupt(s: Snapshot) -> bytes:
        blob = bytearray(encode_snapshot(s))
        blob[len(blob) // 2] ^= 0x40  # one flipped bit in the middle of the data
        return bytes(blob)

    monkeypatch.setattr(snapshot_mod, "encode_snapshot", corrupt)
    a = await cluster.add(1)
    b = await cluster.add(2)
    cluster.connect_all()
    a.transport.send([snap_msg(1, 2, data)])
    await eventually(lambda: a.snapshots_sent == [(2, False)], "on_snapshot_sent(2, False)")
    assert b.received == []
    assert b.transport.inbound.snapshots_rejected == 1


async def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False) as client:
        return await client.post(url + SNAPSHOT_PATH, content=body, headers=headers)


async def test_snapshot_refusals_over_http(cluster: Cluster) -> None:
    b = await cluster.add(2, options=replace(FAST, max_snapshot_bytes=1 << 20))
    b.removed_senders.add(9)
    good = snap_msg(1, 2, b"state" * 100)
    blob = encode_snapshot(good.snapshot or Snapshot())
    headers = {**AUTH.headers(1, 2), ENVELOPE_HEADER: encode_snapshot_envelope(good)}

    r = await post(b.url, blob[:-1], headers)  # torn
    assert (r.status_code, r.json()["error"]) == (400, "bad_snapshot")
    r = await post(b.url, blob, {**headers, ENVELOPE_HEADER: "!!"})  # no envelope
    assert r.status_code == 400
    other = snap_msg(1, 2, b"state" * 100, index=999)  # body and envelope disagree
    r = await post(b.url, blob, {**headers, ENVELOPE_HEADER: encode_snapshot_envelope(other)})
    assert r.status_code == 400
    stolen = snap_msg(3, 2, b"state" * 100)  # envelope names another sender
    r = await post(b.url, blob, {**headers, ENVELOPE_HEADER: encode_snapshot_envelope(stolen)})
    assert r.status_code == 400
    big = snap_msg(1, 2, b"\x00" * (2 << 20))
    r = await post(
        b.url,
        encode_snapshot(big.snapshot or Snapshot()),
        {**headers, ENVELOPE_HEADER: encode_snapshot_envelope(big)},
    )
    assert r.status_code == 413
    r = await post(b.url, blob, {**headers, "x-raftkv-peer-secret": "wrong"})
    assert r.status_code == 403
    r = await post(b.url, blob, {**headers, **AUTH.headers(9, 2)})
    assert r.status_code == 410
    assert b.received == []

    r = await post(b.url, blob, headers)
    assert r.status_code == 204
    assert [m.snapshot for m in b.received] == [good.snapshot]


async def test_snapshot_to_a_removed_member_reports_removal(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2)
    b.removed_senders.add(1)
    a.transport.set_peer(2, b.url)
    a.transport.send([snap_msg(1, 2, b"x")])
    await eventually(lambda: a.snapshots_sent == [(2, False)], "failure reported")
    assert a.removed == 1


async def test_snapshot_to_an_unreachable_peer_fails(cluster: Cluster) -> None:
    a = await cluster.add(1)
    b = await cluster.add(2, serve=False)
    a.transport.set_peer(2, b.url)
    a.transport.send([snap_msg(1, 2, b"x")])
    await eventually(lambda: a.snapshots_sent == [(2, False)], "failure reported")
