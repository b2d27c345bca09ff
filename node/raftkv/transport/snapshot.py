"""Snapshot transfer: a MsgSnap leaves the stream and goes as one chunked HTTP POST.

Why not on the stream: a snapshot can be hundreds of MiB; on the stream it would hold
back every heartbeat and append behind it and blow the frame limit. Like etcd's
rafthttp snapshot sender, it gets its own request.

The body is exactly `wire.encode_snapshot(snapshot)` (header, CRC32, metadata, data),
streamed in `snapshot_chunk_bytes` pieces; the rest of the MsgSnap travels in the
`X-Raftkv-Message` header (`framing.encode_snapshot_envelope`). The receiver buffers
the whole body (bounded by `max_snapshot_bytes`), and only if `decode_snapshot`
verifies the CRC, and the metadata matches the envelope's, does the MsgSnap reach the
Raft core. A torn or flipped transfer is answered 400 and delivers nothing: the core
must never restore its state machine from bytes nobody checked.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import httpx
from starlette.requests import ClientDisconnect, Request

from raftkv.raft.types import Message
from raftkv.transport.auth import PeerRefused
from raftkv.transport.framing import decode_snapshot_envelope, encode_snapshot_envelope
from raftkv.wire import WireError, decode_snapshot, encode_snapshot

SNAPSHOT_PATH = "/raft/snapshot"
ENVELOPE_HEADER = "x-raftkv-message"

_OFFLOAD_BYTES = 1 << 20
"""Above this, encoding and CRC-checking run in a worker thread (zlib.crc32 releases
the GIL) so a large snapshot does not stall heartbeats on the event loop."""


async def send_snapshot(
    client: httpx.AsyncClient,
    peer_url: str,
    headers: dict[str, str],
    msg: Message,
    chunk_bytes: int,
) -> int:
    """POST `msg` (a SNAP with its snapshot) to the peer; return the HTTP status.
    Network failures raise (httpx.HTTPError, OSError)."""
    snap = msg.snapshot
    if snap is None:
        raise WireError("SNAP message without a snapshot")
    if len(snap.data) > _OFFLOAD_BYTES:
        blob = await asyncio.to_thread(encode_snapshot, snap)
    else:
        blob = encode_snapshot(snap)
    request_headers = {
        **headers,
        ENVELOPE_HEADER: encode_snapshot_envelope(msg),
        "content-type": "application/octet-stream",
        # Declared up front so the receiver can refuse an oversized snapshot before
        # reading any of it; httpx then streams the generator without chunked coding.
        "content-length": str(len(blob)),
    }

    async def chunks() -> AsyncIterator[bytes]:
        view = memoryview(blob)
        for offset in range(0, len(view), chunk_bytes):
            yield bytes(view[offset : offset + chunk_bytes])

    url = peer_url.rstrip("/") + SNAPSHOT_PATH
    response = await client.post(url, content=chunks(), headers=request_headers)
    return response.status_code


def _bad(message: str) -> PeerRefused:
    return PeerRefused(400, "bad_snapshot", message)


async def receive_snapshot(request: Request, sender: int, local_id: int, max_bytes: int) -> Message:
    """Read and verify a snapshot POST from an admitted `sender`; the MsgSnap to
    deliver, or `PeerRefused` (400 unverifiable, 413 too large)."""
    try:
        envelope = decode_snapshot_envelope(request.headers.get(ENVELOPE_HEADER, ""))
    except WireError as exc:
        raise _bad(f"bad snapshot envelope: {exc}") from None
    if envelope.sender != sender or envelope.to != local_id:
        raise _bad("snapshot envelope names other members than the handshake")
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise PeerRefused(413, "snapshot_too_large", f"snapshot exceeds {max_bytes} bytes")

    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise PeerRefused(413, "snapshot_too_large", f"snapshot exceeds {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise _bad("sender disconnected mid-snapshot") from None
    blob = b"".join(chunks)
    chunks.clear()

    try:
        if len(blob) > _OFFLOAD_BYTES:
            snap = await asyncio.to_thread(decode_snapshot, blob, max_size=max_bytes)
        else:
            snap = decode_snapshot(blob, max_size=max_bytes)
    except WireError as exc:
        raise _bad(f"snapshot failed verification: {exc}") from None
    assert envelope.snapshot is not None  # decode_snapshot_envelope guarantees it
    if snap.metadata != envelope.snapshot.metadata:
        raise _bad("snapshot metadata differs from its envelope")
    return dataclasses.replace(envelope, snapshot=snap)
