"""`raftkv serve`: run one member until SIGTERM/SIGINT, then stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Iterator
from typing import Any, Literal

import uvicorn
from starlette.types import Receive, Scope, Send

from ..api.client_api import create_client_app
from ..api.forward import LeaderForwarder
from ..etcdapi import gateway as etcd_gateway
from ..etcdapi.server import EtcdServer
from ..etcdapi.services import EtcdServices
from ..etcdapi.tls import server_credentials
from ..storage.errors import StorageError
from ..tls import watch
from ..transport import TransportOptions
from ..transport.auth import not_ready
from ..transport.server import CLOSE_TRY_AGAIN_LATER, deny_websocket, refusal_response
from ..transport.tls import PEER_CLIENT_SSL
from ..transport.transport import peer_uvicorn_config
from .config import ServerConfig, format_hostport
from .dual_listener import serve_tls_and_plain
from .member_tls import member_tls
from .meta import IdentityError
from .node import Node

log = logging.getLogger("raftkv.serve")

EXIT_OK = 0
EXIT_STARTUP = 2
EXIT_FAILED = 3


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the member decides how to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _PeerApp:
    """The peer port, up from the start: a member that is still discovering its id
    has no transport yet and refuses with 503 `not_ready` until it does. Not a 403:
    the leader dials a new learner at once, and must not read the moment before the
    learner knows its id as a wrong cluster id or secret."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = self.node.transport
        if transport is not None:
            await transport.app(scope, receive, send)
            return
        # Debug only: every learner refuses its leader a few times while joining.
        if scope["type"] == "http":
            log.debug("refusing %s %s: member id not known yet", scope["method"], scope["path"])
            await refusal_response(not_ready())(scope, receive, send)
        elif scope["type"] == "websocket":
            log.debug("refusing stream from %s: member id not known yet", scope.get("client"))
            await deny_websocket(
                scope, receive, send, not_ready(), fallback_close=CLOSE_TRY_AGAIN_LATER
            )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _tls_settings(ctx: ssl.SSLContext | None) -> dict[str, Any]:
    """uvicorn settings that serve TLS with `ctx` itself, not a copy: reloading the
    certificate into `ctx` in place must reach the listener's next handshake."""
    if ctx is None:
        return {}
    return {"ssl_context_factory": lambda _config, _default: ctx}


def _server(app: object, ctx: ssl.SSLContext | None = None) -> _Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        lifespan="off",
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=2,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        **_tls_settings(ctx),
    )
    return _Server(config)


def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()


def _start(
    server: _Server, sock: socket.socket, both: ssl.SSLContext | None
) -> tuple[asyncio.Task[None], asyncio.Task[None] | None]:
    """Serve `sock`: by uvicorn itself, or, to take TLS and plain connections on it
    (`both`), by the dual listener handing them to uvicorn."""
    if both is None:
        return asyncio.create_task(server.serve(sockets=[sock])), None
    return (
        asyncio.create_task(server.serve(sockets=[])),
        asyncio.create_task(serve_tls_and_plain(sock, server, both)),
    )


async def serve(cfg: ServerConfig) -> int:
    try:
        tls = member_tls(cfg)
    except ValueError as exc:  # bad flag combinations, and tls.CertFileError
        log.error("TLS: %s", exc)
        return EXIT_STARTUP
    # Inherited by every task made from here on, the node's transport among them.
    PEER_CLIENT_SSL.set(tls.peer_client)
    try:
        client_sock = _bind(cfg.client_host, cfg.client_port)
        peer_sock = _bind(cfg.peer_host, cfg.peer_port)
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return EXIT_STARTUP
    node = Node(cfg)
    tls.attach_metrics(node.metrics.registry)
    try:
        await node.start()
    except (IdentityError, StorageError, ValueError) as exc:
        log.error("member cannot start: %s", exc)
        await node.stop()
        return EXIT_STARTUP
    stop = asyncio.Event()
    failed = False

    def _on_failure() -> None:
        # A failed loop, or a peer telling us at start that this identity was removed
        # (we never applied that removal ourselves): refuse to run, exit non-zero.
        # A member that applies its own removal keeps running, not serving, until
        # whoever removed it (the operator) deletes it.
        nonlocal failed
        if (node.stopping and not node.removed) or node.removed_by_peer:
            if node.removed_by_peer:
                log.error(
                    "member %d was removed from the cluster; refusing to run with its "
                    "identity (wipe the data dir and add it as a new member)",
                    node.member_id,
                )
            failed = True
            stop.set()

    node.on_removed = _on_failure
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = create_client_app(node)
    # etcd's JSON gateway (`POST /v3/...`) on the client port, whether or not the etcd
    # gRPC port is served: the same handlers (docs/etcd.md).
    app.state.etcd_services = EtcdServices(node, app.state.forwarder, cfg.etcd_url)
    app.include_router(etcd_gateway.router)
    if tls.member_client is not None:
        app.state.forwarder.verify = tls.member_client
    # --*-accept-plain: uvicorn serves plain, the dual listener hands it each
    # connection, through TLS when it opens with a handshake (dual_listener.py).
    client_both = tls.client_server if cfg.client_accept_plain else None
    peer_both = tls.peer_server if cfg.peer_accept_plain else None
    client = _server(app, None if client_both else tls.client_server)
    peer = _Server(
        peer_uvicorn_config(
            _PeerApp(node),
            TransportOptions(),
            timeout_graceful_shutdown=2,
            **_tls_settings(None if peer_both else tls.peer_server),
        )
    )
    etcd = await _start_etcd(cfg, node, app.state.forwarder)
    if etcd is False:
        await app.state.forwarder.aclose()
        await node.stop()
        return EXIT_STARTUP
    peer_task, peer_listener = _start(peer, peer_sock, peer_both)
    client_task, client_listener = _start(client, client_sock, client_both)
    tasks = [peer_task, client_task]
    listeners = [t for t in (peer_listener, client_listener) if t is not None]
    reloader = (
        asyncio.create_task(watch(tls.reloaders, cfg.tls_reload_interval), name="raftkv-tls")
        if tls.reloaders
        else None
    )
    log.info(
        "member %d (%s) serving clients on %s, peers on %s",
        node.member_id,
        cfg.name,
        cfg.client_url,
        cfg.peer_url,
    )
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    log.info("stopping member %d", node.member_id)
    try:
        async with asyncio.timeout(cfg.stop_timeout):
            if not failed:
                await node.transfer_leadership_away(timeout=max(1.0, cfg.stop_timeout / 2))
            _cancel(listeners)  # stop taking connections; uvicorn closes the open ones
            client.should_exit = True
            await tasks[1]
            peer.should_exit = True
            await tasks[0]
    except TimeoutError:
        log.warning("graceful stop timed out; closing anyway")
        for t in tasks:
            t.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)
    await _stop_etcd(etcd)
    # uvicorn runs without lifespan events here, so the app's shutdown hook never
    # runs: close the shared forwarding client (its connections to the leader) here.
    await app.state.forwarder.aclose()
    await node.stop()
    waiter.cancel()
    if reloader is not None:
        reloader.cancel()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    return EXIT_FAILED if failed else EXIT_OK


async def _start_etcd(
    cfg: ServerConfig, node: Node, forwarder: LeaderForwarder
) -> EtcdServer | Literal[False] | None:
    """The etcd v3 gRPC API (docs/etcd.md): the server, None when it is off, False
    when an explicit --listen-etcd cannot be served (a startup error). The derived
    default (client port + 10000) that cannot be bound only logs a warning: it was
    not asked for by name, and must not keep a member from starting."""
    addr = cfg.etcd_address
    if addr is None:
        return None
    try:
        server = EtcdServer(
            node, forwarder, *addr, etcd_url=cfg.etcd_url, credentials=server_credentials(cfg)
        )
        await server.start()
    except (OSError, RuntimeError) as exc:
        if cfg.listen_etcd:
            log.error("cannot serve the etcd API on %s: %s", format_hostport(*addr), exc)
            return False
        log.warning("etcd API: not served on %s: %s", format_hostport(*addr), exc)
        return None
    log.info("serving the etcd v3 API on %s", format_hostport(addr[0], server.port))
    node.advertise_etcd(cfg.etcd_url)
    return server


async def _stop_etcd(etcd: EtcdServer | None) -> None:
    if etcd is not None:
        await etcd.stop(grace=1.0)


def run(cfg: ServerConfig) -> int:
    # The WAL and snapshot threads hand results back to the event loop; when the loop
    # thread is busy, a thread that woke from fsync waits for the GIL up to the switch
    # interval (5 ms by default) before it can even report completion, and a snapshot
    # thread can hold the loop off as long. 1 ms bounds both hand-offs.
    sys.setswitchinterval(float(os.environ.get("RAFTKV_SWITCH_INTERVAL", "0.001")))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional
        return asyncio.run(serve(cfg))
    return uvloop.run(serve(cfg))
