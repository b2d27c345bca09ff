"""How batches of messages become WebSocket frames, and how a MsgSnap's envelope
travels next to its streamed body. Pure functions over `raftkv.wire`; no I/O."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from collections.abc import Sequence

from raftkv.raft.types import Message, MessageType, Snapshot
from raftkv.wire import WireError, decode_messages, encode_messages

log = logging.getLogger("raftkv.transport")

DEFAULT_MAX_FRAME_BYTES = 4 << 20
"""Target size of one stream frame. Above this a batch is split so that one frame
never approaches the receiver's WebSocket message limit (uvicorn's `ws_max_size`,
16 MiB by default) and one slow frame does not hold back heartbeats for long. A single
message bigger than this still goes out alone."""


def encode_frames(
    batch: Sequence[Message], max_frame: int = DEFAULT_MAX_FRAME_BYTES
) -> list[bytes]:
    """Encode `batch` as few frames as possible, each at most `max_frame` bytes unless
    it holds a single message, preserving order.

    The common case (a batch well under the limit) costs one `encode_messages` call;
    only oversized batches are halved and re-encoded. A message the codec refuses (a
    bug upstream: a local message type, an out-of-range field) is dropped alone and
    logged rather than taking its batch-mates down with it; Raft retransmits."""
    try:
        frame = encode_messages(batch)
    except WireError:
        if len(batch) == 1:
            log.error("dropping unencodable %s to %x", batch[0].type.name, batch[0].to)
            return []
        mid = len(batch) // 2
        return encode_frames(batch[:mid], max_frame) + encode_frames(batch[mid:], max_frame)
    if len(frame) <= max_frame or len(batch) == 1:
        return [frame]
    mid = len(batch) // 2
    return encode_frames(batch[:mid], max_frame) + encode_frames(batch[mid:], max_frame)


def encode_snapshot_envelope(msg: Message) -> str:
    """The MsgSnap without its snapshot data, as one header-safe string.

    The body of a snapshot POST is exactly `encode_snapshot(msg.snapshot)`, so the
    receiver hands it to `decode_snapshot` without slicing (a slice of a 1 GiB body is
    another 1 GiB). The rest of the message (term, sender, metadata to cross-check)
    rides in a header: the wire codec with empty data, base64url."""
    if msg.type is not MessageType.SNAP or msg.snapshot is None:
        raise WireError("only a SNAP message with a snapshot has an envelope")
    bare = dataclasses.replace(msg, snapshot=Snapshot(msg.snapshot.metadata, b""))
    return base64.urlsafe_b64encode(encode_messages([bare])).decode("ascii")


def decode_snapshot_envelope(value: str) -> Message:
    """Inverse of `encode_snapshot_envelope`; `WireError` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise WireError(f"snapshot envelope is not base64url: {exc}") from exc
    msgs = decode_messages(raw)
    if len(msgs) != 1 or msgs[0].type is not MessageType.SNAP or msgs[0].snapshot is None:
        raise WireError("snapshot envelope must hold exactly one SNAP message")
    return msgs[0]
