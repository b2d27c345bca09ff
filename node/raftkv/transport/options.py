"""Tunables of the peer transport, with the reasoning behind each default."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from raftkv.transport.framing import DEFAULT_MAX_FRAME_BYTES
from raftkv.wire import DEFAULT_MAX_FRAME


@dataclass(frozen=True, slots=True)
class TransportOptions:
    max_queue: int = 4096
    """Messages kept per peer while its stream is down or slow; the oldest go first
    (Raft retransmits, and the newest messages carry the newest term and commit)."""

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Sender-side split point for one stream frame (see `framing.encode_frames`)."""

    max_receive_frame_bytes: int = DEFAULT_MAX_FRAME
    """Largest stream frame accepted. Also what `Transport.uvicorn_config` passes as
    `ws_max_size`: uvicorn's own default (16 MiB) would cut off a stream carrying one
    legitimately large entry."""

    max_snapshot_bytes: int = 1 << 30
    """Largest snapshot body accepted; the receiver buffers it whole to verify the CRC
    before anything is delivered, so this bounds memory per transfer."""

    snapshot_chunk_bytes: int = 256 << 10
    """Size of each chunk written to the snapshot POST body: big enough that per-chunk
    overhead vanishes, small enough that the event loop is never held for long."""

    dial_timeout: float = 5.0
    backoff_initial: float = 0.05
    backoff_max: float = 2.0
    """Cap on the redial delay: a restarted peer is reached again within ~2 s, inside
    a typical election timeout window."""

    ping_interval: float = 5.0
    """Seconds between RTT pings on each outgoing stream."""

    ping_timeout: float = 10.0
    """A pong later than this means the stream is dead (half-open TCP): drop and redial."""

    close_timeout: float = 1.0
    """Bound on the WebSocket closing handshake; past it the TCP connection is aborted."""

    snapshot_timeout: float = 60.0
    """httpx per-operation timeout (each chunk write, the final response read)."""

    stop_timeout: float = 5.0
    """`Transport.stop()` returns within about this long, whatever the peers do."""

    client_ssl: ssl.SSLContext | None = None
    """TLS context for dialling https:// peers (mutual TLS: it carries this member's
    peer certificate and the peer CA); None = `tls.PEER_CLIENT_SSL`, then the system
    defaults. The context may be reloaded in place: each dial uses what it holds."""

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if self.max_frame_bytes > self.max_receive_frame_bytes:
            raise ValueError("max_frame_bytes must not exceed max_receive_frame_bytes")
        if self.snapshot_chunk_bytes < 1:
            raise ValueError("snapshot_chunk_bytes must be positive")
