"""The incoming half of the transport: the peer-port FastAPI app.

Routes (nothing else; FastAPI's docs and OpenAPI routes are off on this port):
- `WS /raft/stream`: a peer's long-lived message stream; each binary frame is one
  `wire.encode_messages` batch, handed to `on_messages` in arrival order.
- `POST /raft/snapshot`: one chunked, CRC-verified snapshot (see `snapshot.py`).
- `GET /raft/health`: unauthenticated liveness for probes; says nothing about the
  cluster beyond this member's id.

Every request is admitted (`auth.admit`) before anything else happens. A refused
stream never gets a WebSocket: the refusal is a plain HTTP response to the upgrade
request (ASGI "WebSocket Denial Response", which uvicorn implements for all its
WebSocket backends), so the sender sees 403/409/410/503 as a status code with the
`PeerRefused` body, exactly like a refused snapshot POST (`deny_websocket`).

Garbage is contained per connection: an undecodable frame closes that one stream with
1008 (policy violation) and is logged; a text frame closes it with 1003. Other
streams, and the process, carry on. Garbage that is not even HTTP never reaches this
app: uvicorn answers 400 and drops the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from raftkv.raft.types import Message
from raftkv.transport.auth import STOPPING, URL_HEADER, PeerAuth, PeerRefused, admit
from raftkv.transport.options import TransportOptions
from raftkv.transport.peer import CLOSE_REMOVED, STREAM_PATH
from raftkv.transport.snapshot import SNAPSHOT_PATH, receive_snapshot
from raftkv.wire import WireError, decode_messages

log = logging.getLogger("raftkv.transport")

HEALTH_PATH = "/raft/health"
CLOSE_POLICY = 1008
CLOSE_UNSUPPORTED = 1003
CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013
_DENIAL_EXTENSION = "websocket.http.response"


def refusal_response(refusal: PeerRefused) -> JSONResponse:
    """The HTTP answer to a refused stream or snapshot. A 503 is a passing state (the
    member is joining or stopping), so it says when to come back, as HTTP expects."""
    headers = {"retry-after": "1"} if refusal.status == 503 else None
    return JSONResponse(refusal.body(), status_code=refusal.status, headers=headers)


async def deny_websocket(
    scope: Scope,
    receive: Receive,
    send: Send,
    refusal: PeerRefused,
    *,
    fallback_close: int = CLOSE_POLICY,
) -> None:
    """Refuse a WebSocket handshake with `refusal`'s status and body, before accept.

    Raw ASGI, so that an app in front of the transport (the member's peer port while
    it has no transport yet) refuses exactly as `Inbound` does. Without the denial
    extension the only pre-accept refusal in ASGI is a close, which servers turn into
    a bodiless 403: the sender then cannot tell any refusal from a wrong secret, which
    is why every server we run on must offer the extension."""
    if _DENIAL_EXTENSION in scope.get("extensions", {}):
        await refusal_response(refusal)(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": fallback_close})


class Inbound:
    """State of the peer port: who is connected, and where their messages go."""

    def __init__(
        self,
        local_id: int,
        auth: PeerAuth,
        on_messages: Callable[[list[Message]], None],
        is_removed: Callable[[int], bool],
        options: TransportOptions,
        on_peer_url: Callable[[int, str], None] | None = None,
    ) -> None:
        self._local_id = local_id
        self._auth = auth
        self._on_messages = on_messages
        self._is_removed = is_removed
        self._on_peer_url = on_peer_url
        self._opts = options
        self._streams: dict[int, WebSocket] = {}
        self._sockets: set[WebSocket] = set()
        self._closing = False
        self.frames_received = 0
        self.messages_received = 0
        self.frames_rejected = 0
        self.snapshots_received = 0
        self.snapshots_rejected = 0

    def build_app(self) -> FastAPI:
        app = FastAPI(title="raftkv peer port", docs_url=None, redoc_url=None, openapi_url=None)
        app.add_api_websocket_route(STREAM_PATH, self.stream)
        app.add_api_route(SNAPSHOT_PATH, self.snapshot, methods=["POST"], status_code=204)
        app.add_api_route(HEALTH_PATH, self.health, methods=["GET"])
        return app

    def connected_peers(self) -> list[int]:
        """Members with an open incoming stream right now."""
        return sorted(self._streams)

    # -- admission -------------------------------------------------------------------------

    def _admit(self, headers: Request | WebSocket) -> int:
        sender = admit(headers.headers, self._auth, self._local_id, self._is_removed)
        if self._closing:
            raise PeerRefused(503, STOPPING, "this member is shutting down")
        return sender

    @staticmethod
    async def _deny(websocket: WebSocket, refusal: PeerRefused) -> None:
        # A 503 (stopping) is this member's own state, not news about the caller, and
        # every peer redials into it while the member stops: not worth a warning each.
        level = logging.DEBUG if refusal.status == 503 else logging.WARNING
        log.log(
            level,
            "refused stream from %s: %d %s",
            websocket.client,
            refusal.status,
            refusal.message,
        )
        # websocket.send, not the raw send: Starlette tracks the handshake state.
        await deny_websocket(websocket.scope, websocket.receive, websocket.send, refusal)

    # -- routes ----------------------------------------------------------------------------

    async def health(self) -> dict[str, object]:
        return {"ok": not self._closing, "member_id": self._local_id}

    async def stream(self, websocket: WebSocket) -> None:
        try:
            sender = self._admit(websocket)
        except PeerRefused as refusal:
            await self._deny(websocket, refusal)
            return
        await websocket.accept()
        url = websocket.headers.get(URL_HEADER)
        if url and self._on_peer_url is not None:
            try:
                self._on_peer_url(sender, url)
            except Exception:
                log.exception("on_peer_url callback failed")
        previous = self._streams.get(sender)
        self._streams[sender] = websocket
        self._sockets.add(websocket)
        if previous is not None:
            # The sender redialled, so the old connection is dead or about to be (a
            # half-open TCP after a network blip, say); keep one stream per sender.
            asyncio.get_running_loop().create_task(self._close(previous, CLOSE_GOING_AWAY))
        log.info("stream from peer %x connected", sender)
        try:
            await self._receive(websocket, sender)
        finally:
            self._sockets.discard(websocket)
            if self._streams.get(sender) is websocket:
                del self._streams[sender]
            log.info("stream from peer %x closed", sender)

    async def _receive(self, websocket: WebSocket, sender: int) -> None:
        local_id = self._local_id
        max_frame = self._opts.max_receive_frame_bytes
        while True:
            event = await websocket.receive()
            if event["type"] == "websocket.disconnect":
                return
            data = event.get("bytes")
            if data is None:
                self.frames_rejected += 1
                log.warning("peer %x sent a text frame; closing its stream", sender)
                await self._close(websocket, CLOSE_UNSUPPORTED, "binary frames only")
                return
            try:
                batch = decode_messages(data, max_size=max_frame)
            except WireError as exc:
                self.frames_rejected += 1
                log.warning("undecodable frame from peer %x (%s); closing its stream", sender, exc)
                await self._close(websocket, CLOSE_POLICY, "undecodable frame")
                return
            if self._is_removed(sender):
                # Removed while connected: the handshake's 410, in band.
                await self._close(websocket, CLOSE_REMOVED, "member removed")
                return
            self.frames_received += 1
            for m in batch:
                if m.to != local_id or m.sender != sender:
                    # Only what the handshake vouched for: from `sender`, to us.
                    log.warning("dropping misaddressed message(s) from peer %x", sender)
                    batch = [m for m in batch if m.to == local_id and m.sender == sender]
                    break
            if batch:
                self.messages_received += len(batch)
                self._on_messages(batch)

    async def snapshot(self, request: Request) -> Response:
        try:
            sender = self._admit(request)
            msg = await receive_snapshot(
                request, sender, self._local_id, self._opts.max_snapshot_bytes
            )
        except PeerRefused as refusal:
            if refusal.status in (400, 413):
                self.snapshots_rejected += 1
            log.warning("refused snapshot: %d %s", refusal.status, refusal.message)
            return refusal_response(refusal)
        self.snapshots_received += 1
        assert msg.snapshot is not None  # receive_snapshot returns a verified one
        log.info("verified snapshot at index %d from peer %x", msg.snapshot.metadata.index, sender)
        self._on_messages([msg])
        return Response(status_code=204)

    # -- shutdown ----------------------------------------------------------------------------

    @staticmethod
    async def _close(websocket: WebSocket, code: int, reason: str = "") -> None:
        # The peer may already be gone, and Starlette raises on closing a closed socket.
        with contextlib.suppress(Exception):
            await websocket.close(code=code, reason=reason)

    async def close_all(self) -> None:
        """Refuse new peers and close every incoming stream (1001, going away)."""
        self._closing = True
        sockets = list(self._sockets)
        if sockets:
            await asyncio.gather(*(self._close(ws, CLOSE_GOING_AWAY) for ws in sockets))
