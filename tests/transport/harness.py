"""Real transports on real uvicorn servers on 127.0.0.1, for the transport tests.

Every wait is a condition with a deadline (`eventually`), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from raftkv.raft.types import Entry, Message, MessageType
from raftkv.transport import PeerAuth, Transport, TransportOptions

AUTH = PeerAuth("test-cluster", "peer-secret-0123456789")

FAST = TransportOptions(
    backoff_initial=0.01,
    backoff_max=0.2,
    dial_timeout=2.0,
    ping_interval=0.05,
    ping_timeout=2.0,
    close_timeout=0.5,
    stop_timeout=2.0,
    snapshot_timeout=10.0,
)


async def eventually(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.002)


def bound_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound (not listening) on 127.0.0.1: connections to it are refused
    until a server takes it over, which gives tests a port before the server exists."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Several servers start and stop in overlapping order in one process: letting
        # each save/restore SIGINT handlers would leave a dead server's handler behind.
        yield


class PeerServer:
    """uvicorn serving one transport's peer app; can be stopped and restarted on the
    same port (the restart test needs the peer URL to stay valid)."""

    def __init__(self, transport: Transport, sock: socket.socket | None = None) -> None:
        self.transport = transport
        sock = sock if sock is not None else bound_socket()
        self._sock: socket.socket | None = sock
        self.port: int = sock.getsockname()[1]
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self._sock is None:
            self._sock = bound_socket(self.port)
        config = self.transport.uvicorn_config("127.0.0.1", self.port, log_level="warning")
        server = _Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[self._sock]))
        await eventually(lambda: server.started or self._task is None or self._task.done(), "start")
        if not server.started:
            raise RuntimeError("uvicorn did not start")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 10)
        self._server = None
        self._task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


@dataclass
class Member:
    id: int
    transport: Transport
    server: PeerServer
    received: list[Message] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    unreachable: list[int] = field(default_factory=list)
    snapshots_sent: list[tuple[int, bool]] = field(default_factory=list)
    removed: int = 0
    rtts: list[tuple[int, float]] = field(default_factory=list)
    removed_senders: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return self.server.url

    def from_(self, sender: int) -> list[Message]:
        return [m for m in self.received if m.sender == sender]


class Cluster:
    """Members created by a test; `close()` stops all of them (the fixture calls it)."""

    def __init__(self) -> None:
        self.members: dict[int, Member] = {}

    async def add(
        self,
        member_id: int,
        *,
        auth: PeerAuth = AUTH,
        options: TransportOptions = FAST,
        serve: bool = True,
        **kwargs: Any,
    ) -> Member:
        holder: list[Member] = []

        def on_messages(batch: list[Message]) -> None:
            holder[0].received.extend(batch)
            holder[0].batches.append(len(batch))

        def on_removed() -> None:
            holder[0].removed += 1

        transport = Transport(
            member_id,
            auth,
            on_messages,
            lambda p: holder[0].unreachable.append(p),
            lambda p, ok: holder[0].snapshots_sent.append((p, ok)),
            is_removed=lambda s: s in holder[0].removed_senders,
            on_removed=on_removed,
            observe_rtt=lambda p, s: holder[0].rtts.append((p, s)),
            options=options,
            **kwargs,
        )
        member = Member(member_id, transport, PeerServer(transport))
        holder.append(member)
        self.members[member_id] = member
        if serve:
            await member.server.start()
        await transport.start()
        return member

    def connect_all(self) -> None:
        for a in self.members.values():
            for b in self.members.values():
                if a.id != b.id:
                    a.transport.set_peer(b.id, b.url)

    async def close(self) -> None:
        for m in self.members.values():
            await m.transport.stop()
        for m in self.members.values():
            await m.server.stop()


def app(sender: int, to: int, index: int, payload: bytes = b"", term: int = 1) -> Message:
    entries = (Entry(term, index, data=payload),) if payload else ()
    return Message(MessageType.APP, to, sender, term=term, index=index, entries=entries)
