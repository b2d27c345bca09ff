"""In-process members for the client API: real `Node`s (real storage in tmp dirs, real
Raft) whose peer transport is an in-memory fake, each served by its own app through
`httpx.ASGITransport`; forwarding to the leader goes to the leader's app in-process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import raftkv.server.node as node_module
from raftkv.api.client_api import create_client_app
from raftkv.api.forward import LeaderForwarder
from raftkv.raft import Message, MessageType
from raftkv.server.config import InitialMember, ServerConfig
from raftkv.server.node import Node
from raftkv.wire import decode_messages, encode_messages


class FakeNet:
    """Peer URL -> the fake transport listening there."""

    def __init__(self) -> None:
        self.at: dict[str, FakeTransport] = {}


class FakeTransport:
    """What `Node` uses of `raftkv.transport.Transport`, in memory: messages go through
    the wire encoding and arrive on the next loop iteration; snapshots always land."""

    def __init__(
        self,
        net: FakeNet,
        member_id: int,
        auth: Any,
        on_messages: Callable[[list[Message]], None],
        on_unreachable: Callable[[int], None],
        on_snapshot_sent: Callable[[int, bool], None],
        **_: Any,
    ) -> None:
        self.net = net
        self.member_id = member_id
        self.on_messages = on_messages
        self.on_snapshot_sent = on_snapshot_sent
        self._peers: dict[int, str] = {}
        self.stopped = False
        self.app = None
        net.at[auth.advertise_url] = self

    def set_peer(self, peer_id: int, url: str) -> None:
        if peer_id != self.member_id:
            self._peers[peer_id] = url

    def remove_peer(self, peer_id: int) -> None:
        self._peers.pop(peer_id, None)

    def peers(self) -> dict[int, str]:
        return dict(self._peers)

    def send(self, msgs: Sequence[Message]) -> None:
        loop = asyncio.get_running_loop()
        for m in msgs:
            dest = self.net.at.get(self._peers.get(m.to, ""))
            if self.stopped or dest is None or dest.stopped:
                continue
            loop.call_soon(dest.deliver, encode_messages([m]))
            if m.type is MessageType.SNAP:
                loop.call_soon(self.on_snapshot_sent, m.to, True)

    def deliver(self, data: bytes) -> None:
        if not self.stopped:
            self.on_messages(decode_messages(data))

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


class AppRouter(httpx.AsyncBaseTransport):
    """An httpx transport that hands each request to the app serving its host:port."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        app = self.apps.get(request.url.netloc.decode())
        if app is None:
            raise httpx.ConnectError(f"nothing listens on {request.url}", request=request)
        return await app.handle_async_request(request)


@dataclass
class InProcessMember:
    node: Node
    app: FastAPI

    @property
    def url(self) -> str:
        return self.node.cfg.client_url

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=self.url, timeout=10
        )


@dataclass
class InProcessCluster:
    members: list[InProcessMember] = field(default_factory=list)

    async def leader(self, timeout: float = 10.0) -> InProcessMember:
        async with asyncio.timeout(timeout):
            while True:
                leaders = [m for m in self.members if m.node.is_leader()]
                # Ready, and every member knows where to forward to (the leader's
                # client URL is published through the log after it starts).
                ready = all(m.node.is_ready() and m.node.leader_client_url() for m in self.members)
                if len(leaders) == 1 and ready:
                    return leaders[0]
                await asyncio.sleep(0.01)

    async def follower(self) -> InProcessMember:
        leader = await self.leader()
        return next(m for m in self.members if m is not leader)


def _config(tmp: Path, name: str, initial: list[InitialMember], port: int) -> ServerConfig:
    return ServerConfig(
        name=name,
        data_dir=tmp / name,
        client_port=port,
        peer_port=port + 1,
        initial_cluster=initial,
        peer_secret="test-secret",
        tick_ms=10,
        request_timeout=2.0,
    )


async def start_cluster(tmp: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> InProcessCluster:
    net = FakeNet()

    def transport(*args: Any, **kwargs: Any) -> FakeTransport:
        return FakeTransport(net, *args, **kwargs)

    monkeypatch.setattr(node_module, "Transport", transport)
    ports = [41000 + 10 * i for i in range(size)]
    initial = [
        InitialMember(i + 1, f"m{i + 1}", f"http://127.0.0.1:{p + 1}") for i, p in enumerate(ports)
    ]
    router = AppRouter()
    cluster = InProcessCluster()
    for i, port in enumerate(ports):
        node = Node(_config(tmp, f"m{i + 1}", initial, port))
        await node.start()
        app = create_client_app(node)
        app.state.forwarder = LeaderForwarder(node.cfg.request_timeout + 1, transport=router)
        router.apps[f"127.0.0.1:{port}"] = httpx.ASGITransport(app=app)
        cluster.members.append(InProcessMember(node, app))
    return cluster


async def stop_cluster(cluster: InProcessCluster) -> None:
    for m in cluster.members:
        await m.app.state.forwarder.aclose()
        await m.node.stop()
