"""`Transport`: what the node loop sees of the network.

It glues the three parts together and owns their lifetimes:
- outgoing streams, one `PeerStream` per peer (`peer.py`);
- snapshot POSTs, one task per MsgSnap (`snapshot.py`);
- the peer-port app for incoming traffic (`server.py`), served by the caller with
  uvicorn (see `uvicorn_config`).

Everything runs on the node's event loop; `send` never blocks and never awaits, so the
node loop can hand over `Ready.messages` and move on to the next step. Callbacks into
the node are guarded: an exception in one is logged, it never kills a stream task or
the peer port.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec

import httpx
import uvicorn

from raftkv.raft.types import Message, MessageType
from raftkv.transport.auth import PeerAuth
from raftkv.transport.options import TransportOptions
from raftkv.transport.peer import PeerStats, PeerStream, StreamHooks, stream_url
from raftkv.transport.server import Inbound
from raftkv.transport.snapshot import send_snapshot
from raftkv.transport.tls import peer_client_ssl

log = logging.getLogger("raftkv.transport")

_P = ParamSpec("_P")


def _guarded(fn: Callable[_P, None], what: str) -> Callable[_P, None]:
    @functools.wraps(fn)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.exception("transport callback %s raised", what)

    return call


def _no_rtt(_peer: int, _seconds: float) -> None:
    return None


_SPURIOUS_DENIAL_ERROR = "ASGI callable returned without completing handshake."


class _DenialNoiseFilter(logging.Filter):
    """uvicorn's default WebSocket backend (websockets-sansio, up to at least 0.54)
    logs the message above at ERROR after *every* WebSocket Denial Response, although
    the refusal went out correctly (Kludex/uvicorn PR #3138). The peer port refuses a
    removed or misconfigured member on each redial, so without this filter every
    refusal would page someone. Only that exact message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _SPURIOUS_DENIAL_ERROR


def _install_denial_noise_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DenialNoiseFilter) for f in logger.filters):
        logger.addFilter(_DenialNoiseFilter())


class Transport:
    """Raft message transport of one member (see docs in the package `__init__`)."""

    def __init__(
        self,
        member_id: int,
        auth: PeerAuth,
        on_messages: Callable[[list[Message]], None],
        on_unreachable: Callable[[int], None],
        on_snapshot_sent: Callable[[int, bool], None],
        is_removed: Callable[[int], bool] = lambda _: False,
        on_removed: Callable[[], None] = lambda: None,
        observe_rtt: Callable[[int, float], None] | None = None,
        max_queue: int = 4096,
        *,
        options: TransportOptions | None = None,
        on_peer_url: Callable[[int, str], None] | None = None,
    ) -> None:
        """`max_queue` is shorthand for `options.max_queue`; when `options` is given it
        is used as is. `on_peer_url(sender, url)` reports the advertised peer URL an
        incoming stream presented (see `auth.URL_HEADER`)."""
        if member_id <= 0:
            raise ValueError("member id must be positive")
        self.member_id = member_id
        self.auth = auth
        self.options = options if options is not None else TransportOptions(max_queue=max_queue)
        self.client_ssl = peer_client_ssl(self.options.client_ssl)
        self._on_snapshot_sent = _guarded(on_snapshot_sent, "on_snapshot_sent")
        self._on_removed = _guarded(on_removed, "on_removed")
        self._removed_reported = False
        self._hooks = StreamHooks(
            unreachable=_guarded(on_unreachable, "on_unreachable"),
            removed=self._report_removed,
            rtt=_guarded(observe_rtt or _no_rtt, "observe_rtt"),
        )
        self._peers: dict[int, PeerStream] = {}
        self._snapshots: dict[asyncio.Task[None], int] = {}
        self._retired: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._started = False
        self._stopped = False
        self._inbound = Inbound(
            member_id,
            auth,
            _guarded(on_messages, "on_messages"),
            is_removed,
            self.options,
            on_peer_url=None if on_peer_url is None else _guarded(on_peer_url, "on_peer_url"),
        )
        self.app = self._inbound.build_app()

    # -- membership --------------------------------------------------------------------------

    def set_peer(self, peer_id: int, url: str) -> None:
        """Add a peer, or point an existing one at a new peer URL (http://host:port)."""
        if peer_id == self.member_id:
            return  # a member never streams to itself; callers may pass the full list
        stream_url(url)  # validate before touching state
        peer = self._peers.get(peer_id)
        if peer is not None:
            if peer.url != url:
                peer.retarget(url)
            return
        peer = PeerStream(
            peer_id,
            url,
            local_id=self.member_id,
            auth=self.auth,
            options=self.options,
            hooks=self._hooks,
            client_ssl=self.client_ssl,
        )
        self._peers[peer_id] = peer
        if self._started and not self._stopped:
            peer.start()

    def remove_peer(self, peer_id: int) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            self._retire(peer.cancel())
        for task, target in list(self._snapshots.items()):
            if target == peer_id:
                task.cancel()

    def peers(self) -> dict[int, str]:
        return {pid: p.url for pid, p in self._peers.items()}

    # -- sending -----------------------------------------------------------------------------

    def send(self, msgs: Sequence[Message]) -> None:
        """Queue `msgs` for their destinations and return at once.

        Non-SNAP messages join their peer's stream queue (dropping the oldest beyond
        `max_queue`); a SNAP starts its own chunked POST. Unknown destinations are
        dropped: the peer was removed, or not added yet, and Raft will retry."""
        if self._stopped:
            return
        peers = self._peers
        for m in msgs:
            peer = peers.get(m.to)
            if peer is None:
                log.debug("dropping %s to unknown peer %x", m.type.name, m.to)
            elif m.type is MessageType.SNAP:
                self._start_snapshot(peer, m)
            else:
                peer.enqueue(m)

    def _start_snapshot(self, peer: PeerStream, msg: Message) -> None:
        task = asyncio.get_running_loop().create_task(
            self._send_snapshot(peer.peer_id, peer.url, msg),
            name=f"raftkv-snapshot-{peer.peer_id:x}",
        )
        self._snapshots[task] = peer.peer_id
        task.add_done_callback(self._snapshots.pop)

    async def _send_snapshot(self, peer_id: int, url: str, msg: Message) -> None:
        ok = False
        try:
            status = await send_snapshot(
                self._http(),
                url,
                self.auth.headers(self.member_id, peer_id),
                msg,
                self.options.snapshot_chunk_bytes,
            )
            ok = status == 204
            if status == 410:
                self._report_removed()
            elif not ok:
                log.warning("peer %x refused a snapshot with HTTP %d", peer_id, status)
        except Exception as exc:
            log.warning("sending a snapshot to peer %x failed: %r", peer_id, exc)
        finally:
            # Also on cancellation (remove_peer): the core must leave its SNAPSHOT
            # progress state for this peer. Not once stopped: the node is going away.
            if not self._stopped:
                self._on_snapshot_sent(peer_id, ok)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            opts = self.options
            self._client = httpx.AsyncClient(
                # Like the streams: never route peer traffic through an env proxy.
                trust_env=False,
                timeout=httpx.Timeout(opts.snapshot_timeout, connect=opts.dial_timeout),
                verify=self.client_ssl if self.client_ssl is not None else True,
            )
        return self._client

    def _report_removed(self) -> None:
        if not self._removed_reported:
            self._removed_reported = True
            self._on_removed()

    def _retire(self, task: asyncio.Task[None] | None) -> None:
        # Cancelled stream tasks still close their socket; stop() waits for them.
        if task is not None and not task.done():
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._stopped:
            raise RuntimeError("a stopped Transport cannot be restarted")
        self._started = True
        for peer in self._peers.values():
            peer.start()

    async def stop(self) -> None:
        """Close every outgoing stream and snapshot transfer, and every incoming
        stream; return within about `options.stop_timeout` whatever the peers do."""
        if self._stopped:
            return
        self._stopped = True
        tasks: set[asyncio.Task[None]] = set(self._retired)
        for peer in self._peers.values():
            task = peer.cancel()
            if task is not None:
                tasks.add(task)
        for task in self._snapshots:
            task.cancel()
            tasks.add(task)
        timeout = self.options.stop_timeout
        try:
            async with asyncio.timeout(timeout / 2):  # not wait_for: see PeerStream._serve
                await self._inbound.close_all()
        except TimeoutError:
            log.warning("incoming streams did not close within %.1fs", timeout / 2)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout / 2)
            if pending:
                log.warning("%d transport task(s) still running after stop()", len(pending))
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- observation ---------------------------------------------------------------------------

    def peer_stats(self) -> list[PeerStats]:
        return [p.stats() for p in self._peers.values()]

    def snapshots_in_flight(self) -> dict[int, int]:
        """Peer id -> number of snapshot transfers to it still running."""
        counts: dict[int, int] = {}
        for peer_id in self._snapshots.values():
            counts[peer_id] = counts.get(peer_id, 0) + 1
        return counts

    def incoming_peers(self) -> list[int]:
        """Members with an open stream to us."""
        return self._inbound.connected_peers()

    @property
    def inbound(self) -> Inbound:
        return self._inbound

    def uvicorn_config(
        self, host: str = "127.0.0.1", port: int = 0, **overrides: Any
    ) -> uvicorn.Config:
        """A uvicorn Config serving `self.app`; see `peer_uvicorn_config`."""
        return peer_uvicorn_config(self.app, self.options, host=host, port=port, **overrides)


def peer_uvicorn_config(
    app: Any, options: TransportOptions, host: str = "127.0.0.1", port: int = 0, **overrides: Any
) -> uvicorn.Config:
    """A uvicorn Config for the peer port with the settings this transport relies
    on; `overrides` win (host/port do not matter when the caller passes its own
    listening sockets to `Server.serve(sockets=...)`). Why each one:
    - `ws_max_size`: uvicorn's 16 MiB default is below what a stream may carry;
    - `ws_per_message_deflate=False`: compression is never negotiated anyway (our
      client does not offer it), this just keeps the server from advertising it;
    - `lifespan="off"`: the app has no startup work and the node loop owns it;
    - `access_log=False`: one line per snapshot and stream is noise at info.
    Also silences uvicorn's spurious error after a refused stream (see
    `_DenialNoiseFilter`). `app` may be any ASGI app that fronts a transport's."""
    _install_denial_noise_filter()
    settings: dict[str, Any] = {
        "host": host,
        "port": port,
        "ws_max_size": options.max_receive_frame_bytes,
        "ws_per_message_deflate": False,
        "lifespan": "off",
        "access_log": False,
        "log_level": "warning",
        "timeout_graceful_shutdown": options.stop_timeout,
    }
    settings.update(overrides)
    return uvicorn.Config(app, **settings)
