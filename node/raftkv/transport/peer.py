"""The outgoing half of the transport: one long-lived WebSocket stream per peer.

Modelled on etcd rafthttp's stream writer. One asyncio task per peer owns the
connection: it dials `ws://<peer>/raft/stream`, then repeatedly takes *everything*
queued since its last write and sends it as one binary frame. There is no batching
timer: when the peer keeps up, each message leaves as soon as the task runs (low
latency when idle), and while a write is waiting for the socket to drain the queue
grows, so the next frame carries more (throughput under load).

The stream is one-way (the peer dials us for its own traffic), which keeps per-peer
order trivially: one writer, one connection, FIFO queue. Messages sent on a
connection that breaks may be lost; Raft retransmits, so the queue is not rewound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from raftkv.raft.types import Message
from raftkv.transport.auth import NOT_READY, STOPPING, PeerAuth, refusal_code
from raftkv.transport.backoff import Backoff
from raftkv.transport.framing import encode_frames
from raftkv.transport.options import TransportOptions

log = logging.getLogger("raftkv.transport")

STREAM_PATH = "/raft/stream"
CLOSE_REMOVED = 4410
"""Close code the receiver uses when a connected sender is removed mid-stream: the
in-band twin of the handshake's HTTP 410."""


@dataclass(frozen=True, slots=True)
class StreamHooks:
    """Callbacks into the node; the Transport wraps them so they never raise here."""

    unreachable: Callable[[int], None]
    removed: Callable[[], None]
    rtt: Callable[[int, float], None]


@dataclass(frozen=True, slots=True)
class PeerStats:
    """Point-in-time view of one outgoing stream (for status pages and tests)."""

    peer_id: int
    url: str
    connected: bool
    queued: int
    dropped: int
    frames_sent: int
    messages_sent: int
    last_rtt: float | None


def stream_url(peer_url: str) -> str:
    """`http://host:port` (the advertised peer URL) to the stream's WebSocket URL."""
    base = peer_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + STREAM_PATH
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :] + STREAM_PATH
    raise ValueError(f"peer URL must be http:// or https://, got {peer_url!r}")


def _set_nodelay(ws: ClientConnection) -> None:
    # asyncio and uvloop both enable TCP_NODELAY on TCP transports already; set it
    # explicitly anyway, since a Nagle delay on a heartbeat is invisible until the day
    # an event loop changes its default.
    sock = ws.transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PeerStream:
    """Queue and connection for one peer. `enqueue` is synchronous and never blocks."""

    def __init__(
        self,
        peer_id: int,
        url: str,
        *,
        local_id: int,
        auth: PeerAuth,
        options: TransportOptions,
        hooks: StreamHooks,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.peer_id = peer_id
        self._ssl = client_ssl
        self.url = url
        self._ws_url = stream_url(url)
        self._local_id = local_id
        self._auth = auth
        self._opts = options
        self._hooks = hooks
        self._queue: deque[Message] = deque(maxlen=options.max_queue)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self.dropped = 0
        self.frames_sent = 0
        self.messages_sent = 0
        self.last_rtt: float | None = None

    # -- called from the Transport ----------------------------------------------------

    def enqueue(self, msg: Message) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # deque(maxlen) evicts the oldest on append
        self._queue.append(msg)
        self._wake.set()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"raftkv-stream-{self.peer_id:x}"
            )

    def retarget(self, url: str) -> None:
        """The peer moved: drop the current connection and dial the new address.
        Queued messages are kept (they are still addressed to the same member)."""
        self._ws_url = stream_url(url)
        self.url = url
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.start()

    def cancel(self) -> asyncio.Task[None] | None:
        """Stop the stream; returns the task to await (its cleanup closes the socket)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    def stats(self) -> PeerStats:
        ws = self._ws
        return PeerStats(
            peer_id=self.peer_id,
            url=self.url,
            connected=ws is not None and ws.state is State.OPEN,
            queued=len(self._queue),
            dropped=self.dropped,
            frames_sent=self.frames_sent,
            messages_sent=self.messages_sent,
            last_rtt=self.last_rtt,
        )

    # -- the task -----------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self._opts.backoff_initial, self._opts.backoff_max)
        failures = 0  # consecutive; the first is a warning, the rest debug (no log floods)
        while True:
            try:
                ws = await self._dial()
            except InvalidStatus as exc:
                response = exc.response
                code = refusal_code(response.body)
                if self._refused(response.status_code, code, first=failures == 0):
                    backoff.attempt = 64  # a refusal will not heal in milliseconds
                self._hooks.unreachable(self.peer_id)
            except Exception as exc:  # OSError, TimeoutError, InvalidHandshake, ...
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "cannot reach peer %x at %s: %r", self.peer_id, self.url, exc)
                self._hooks.unreachable(self.peer_id)
            else:
                failures = -1
                backoff.reset()
                log.info("stream to peer %x at %s connected", self.peer_id, self.url)
                await self._serve(ws)
                self._hooks.unreachable(self.peer_id)
            failures += 1
            await asyncio.sleep(backoff.next())

    def _refused(self, status: int, code: str | None, *, first: bool) -> bool:
        """Log a refused handshake; return True when it will not heal in milliseconds,
        so the next dial waits as long as the backoff allows.

        503 `not_ready` and `stopping` are the peer's own passing states, not a
        verdict on us: a learner refuses its leader that way for a moment on every
        join. They are logged once at INFO per outage (DEBUG after) and never as the
        403 that a wrong cluster id or secret gets. A `not_ready` learner keeps the
        normal backoff progression, since the leader should reach it as soon as it
        knows its id; a stopping member is going away for at least a restart."""
        if status == 503 and code == NOT_READY:
            log.log(
                logging.INFO if first else logging.DEBUG,
                "peer %x does not know its member id yet (joining); retrying",
                self.peer_id,
            )
            return False
        if status == 503 and code == STOPPING:
            log.log(
                logging.INFO if first else logging.DEBUG,
                "peer %x is shutting down; retrying",
                self.peer_id,
            )
            return True
        if status == 410:
            log.error("peer %x says this member (%x) was removed", self.peer_id, self._local_id)
            self._hooks.removed()
        elif status == 403:
            log.error("peer %x refused our cluster id or peer secret (403)", self.peer_id)
        elif status == 409:
            log.error("%s is not member %x (409): stale peer URL?", self.url, self.peer_id)
        else:
            log.warning("peer %x refused the stream with HTTP %d (%s)", self.peer_id, status, code)
        return True

    async def _dial(self) -> ClientConnection:
        # websockets refuses an ssl argument for ws:// URLs; for wss:// without one it
        # falls back to the system CAs, which never hold a cluster's own peer CA.
        secure = self._ssl is not None and self._ws_url.startswith("wss:")
        tls: dict[str, Any] = {"ssl": self._ssl} if secure else {}
        ws = await connect(
            self._ws_url,
            **tls,
            additional_headers=self._auth.headers(self._local_id, self.peer_id),
            # Frames are already compact msgpack; deflate would cost CPU on both ends
            # for little gain. Not offering it means the server cannot enable it.
            compression=None,
            # websockets >= 15 follows HTTP(S)_PROXY from the environment by default;
            # peer traffic must go straight to the pod.
            proxy=None,
            open_timeout=self._opts.dial_timeout,
            ping_interval=None,  # our own ping loop measures RTT and detects half-open
            ping_timeout=None,
            close_timeout=self._opts.close_timeout,
            max_size=1 << 20,  # the receiver never sends data on this stream
            user_agent_header=f"raftkv-peer/{self._local_id:x}",
        )
        _set_nodelay(ws)
        return ws

    async def _serve(self, ws: ClientConnection) -> None:
        """Pump frames until the connection fails; always closes it before returning."""
        self._ws = ws
        watcher = asyncio.create_task(self._watch(ws))
        pinger = asyncio.create_task(self._ping_loop(ws))
        try:
            await self._pump(ws)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("stream to peer %x failed", self.peer_id)
        finally:
            self._ws = None
            watcher.cancel()
            pinger.cancel()
            # asyncio.timeout, never wait_for: on Python 3.11 wait_for swallows a
            # cancellation that lands as the inner await completes, and stop() cancels
            # exactly while streams are closing; the task would then redial forever.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._opts.close_timeout * 2):
                    await ws.close()
            ws.transport.abort()
            await asyncio.wait((watcher, pinger))  # so stop() leaves no task behind
        code = ws.close_code
        if code == CLOSE_REMOVED:
            log.error("peer %x says this member (%x) was removed", self.peer_id, self._local_id)
            self._hooks.removed()
        elif code == 1008:
            log.error("peer %x closed our stream as a policy violation", self.peer_id)
        else:
            # 1000/1001/1012: the peer is stopping or restarting; anything else (1006:
            # the connection just died) is worth a warning.
            level = logging.INFO if code in (1000, 1001, 1012) else logging.WARNING
            log.log(level, "stream to peer %x closed (code %s)", self.peer_id, code)

    async def _pump(self, ws: ClientConnection) -> None:
        queue = self._queue
        wake = self._wake
        while True:
            while not queue:
                if ws.state is not State.OPEN:
                    return
                wake.clear()
                await wake.wait()
            if ws.state is not State.OPEN:
                return
            batch = list(queue)
            queue.clear()
            for frame in encode_frames(batch, self._opts.max_frame_bytes):
                await ws.send(frame)
                self.frames_sent += 1
            self.messages_sent += len(batch)

    async def _watch(self, ws: ClientConnection) -> None:
        # The pump sleeps on `wake` while idle; a connection that dies meanwhile must
        # wake it, or the member would not notice until it next had something to send.
        await ws.wait_closed()
        self._wake.set()

    async def _ping_loop(self, ws: ClientConnection) -> None:
        while True:
            try:
                pong = await ws.ping()
                async with asyncio.timeout(self._opts.ping_timeout):
                    rtt = await pong
            except ConnectionClosed:
                return
            except TimeoutError:
                log.warning(
                    "peer %x did not answer a ping in %.1fs", self.peer_id, self._opts.ping_timeout
                )
                ws.transport.abort()
                return
            self.last_rtt = rtt
            self._hooks.rtt(self.peer_id, rtt)
            await asyncio.sleep(self._opts.ping_interval)
