"""One port that takes both TLS and plain connections, told apart by their first
byte (a TLS connection opens with a handshake record, 0x16; HTTP opens with a
method's letters), for turning TLS on (or off) in a running cluster without a moment
in which members cannot reach each other (docs/tls.md, "Turning TLS on in a running
cluster").

uvicorn serves the connections as usual: it is started with no listening socket of
its own, and each accepted connection is handed to its protocol, over TLS or not.
Its shutdown then closes those connections as it closes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import Callable

import uvicorn

log = logging.getLogger("raftkv.server")

TLS_HANDSHAKE_RECORD = 0x16
FIRST_BYTE_TIMEOUT = 10.0
"""A connection that sends nothing for this long is closed (as a TLS handshake that
stalls would be)."""


async def serve_tls_and_plain(
    sock: socket.socket,
    server: uvicorn.Server,
    ctx: ssl.SSLContext,
    *,
    first_byte_timeout: float = FIRST_BYTE_TIMEOUT,
) -> None:
    """Accept on `sock` until cancelled, handing each connection to `server`'s
    protocol, through TLS with `ctx` (itself, not a copy: a certificate reloaded into
    it reaches the next handshake) when it opens with a handshake record. `server`
    must be serving with no sockets of its own (`server.serve(sockets=[])`)."""
    loop = asyncio.get_running_loop()
    while not server.started:  # uvicorn's startup: config loaded, lifespan made
        if server.should_exit:
            return
        await asyncio.sleep(0.005)
    cfg = server.config
    factory: Callable[[], asyncio.Protocol] = functools.partial(
        cfg.http_protocol_class,  # type: ignore[call-arg]
        config=cfg,
        server_state=server.server_state,
        app_state=server.lifespan.state,
    )
    pending: set[asyncio.Task[None]] = set()
    try:
        while True:
            conn, _ = await loop.sock_accept(sock)
            task = asyncio.create_task(_hand_over(loop, conn, factory, ctx, first_byte_timeout))
            pending.add(task)
            task.add_done_callback(pending.discard)
    finally:
        for task in pending:
            task.cancel()
        for task in list(pending):
            with contextlib.suppress(BaseException):
                await task


async def _hand_over(
    loop: asyncio.AbstractEventLoop,
    conn: socket.socket,
    factory: Callable[[], asyncio.Protocol],
    ctx: ssl.SSLContext,
    timeout: float,
) -> None:
    try:
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        async with asyncio.timeout(timeout):
            first = await _peek(loop, conn)
        if not first:
            conn.close()  # closed before saying anything
            return
        tls = first[0] == TLS_HANDSHAKE_RECORD
        await loop.connect_accepted_socket(factory, conn, ssl=ctx if tls else None)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        log.debug("connection dropped before it was served: %r", exc)
        conn.close()
    except asyncio.CancelledError:
        conn.close()
        raise


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The connection's first byte, left unread for whoever serves it."""
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        ready = loop.create_future()
        loop.add_reader(conn.fileno(), ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())
