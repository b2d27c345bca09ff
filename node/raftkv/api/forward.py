"""Membership changes and leader transfers go through the leader: any member accepts
them and forwards the request over the leader's client URL, with one shared HTTP client
(connections to the leader are reused) instead of one per request."""

from __future__ import annotations

import ssl

import httpx
from fastapi import Request
from fastapi.responses import Response

from ..server import errors as E
from ..server.node import Node

FORWARDED_HEADER = "x-raftkv-forwarded"
_KEPT_HEADERS = ("retry-after", "etag")


class LeaderForwarder:
    """Owns the `httpx.AsyncClient`: `start()` at app startup, `aclose()` at shutdown.
    A server run without lifespan events gets the client on first use instead.
    `transport` replaces the network (tests route to in-process apps)."""

    def __init__(self, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.timeout = timeout
        self.transport = transport
        self.verify: ssl.SSLContext | bool = True
        """TLS towards the leader's https client URL; `raftkv serve` sets the member's
        own client context (docs/tls.md) before the first request."""
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self.client()

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout, transport=self.transport, verify=self.verify
            )
        return self._client

    async def forward(self, node: Node, request: Request, body: bytes) -> Response:
        url = node.leader_client_url()
        if url is None or node.is_leader():
            raise E.Unavailable("no leader is known; retry shortly", code="no_leader")
        if request.headers.get(FORWARDED_HEADER):
            raise E.Unavailable("leadership is changing; retry shortly", code="not_leader")
        try:
            r = await self.client().request(
                request.method,
                url + request.url.path + (f"?{request.url.query}" if request.url.query else ""),
                content=body,
                headers={"content-type": "application/json", FORWARDED_HEADER: "1"},
            )
        except httpx.HTTPError as exc:
            raise E.Unavailable(f"could not reach the leader: {exc}", code="no_leader") from exc
        headers = {k: v for k, v in r.headers.items() if k.lower() in _KEPT_HEADERS}
        return Response(r.content, r.status_code, headers, media_type="application/json")
