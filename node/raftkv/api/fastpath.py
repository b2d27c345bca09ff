"""Plain ASGI middleware of the client app: the single-key KV fast path and the
request-duration metric."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..server import errors as E
from .kv import KV_ROUTE
from .responses import error_response

log = logging.getLogger("raftkv.api")


class KVFastPath:
    """Serves `/v1/kv/<key>` straight from ASGI with the app's own handlers; every
    other request goes to the FastAPI app as usual. Single-key reads and writes so
    skip FastAPI's routing, dependency and exception layers (a quarter of the leader's
    CPU under load) but run the very handlers the routes run, so behaviour and errors
    are identical."""

    def __init__(
        self,
        app: ASGIApp,
        handlers: dict[str, Callable[[Request], Awaitable[Response]]],
        observe: Histogram,
        exact: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]] | None = None,
    ) -> None:
        self.app = app
        self.handlers = handlers
        self.observe = observe
        self.exact = exact or {}
        """(method, path) -> handler: other hot routes (`POST /v1/txn`, `/v1/range`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        route = KV_ROUTE
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith("/v1/kv/"):
                handler = self.handlers.get(scope["method"])
            else:
                handler = self.exact.get((scope["method"], path))
                route = path
        if handler is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            response = await handler(Request(scope, receive))
        except E.ApiError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            response = error_response(E.ApiError("internal error; see the member's log"))
        await response(scope, receive, send)
        self.observe.labels(route, scope["method"], str(response.status_code)).observe(
            time.perf_counter() - start
        )


class MetricsMiddleware:
    """Times every request by route template (never the raw path: keys would explode
    the label space). Plain ASGI, because BaseHTTPMiddleware costs a task per request."""

    def __init__(self, app: ASGIApp, observe: Histogram) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            self.observe.labels(name, scope["method"], str(status)).observe(
                time.perf_counter() - start
            )
