"""The client API (DESIGN.md): a FastAPI app whose handlers only translate HTTP to
`Node` calls, one router per resource:

- `kv`: keys (the single-key routes also served by the ASGI fast path, `fastpath`);
- `members`: membership and leader transfer (rules in `server.membership`);
- `snapshot`: backups;
- `status`: status, probes and metrics.

Shared concerns are FastAPI dependencies (`deps`); every body on the wire is described
in `schema`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from ..server import errors as E
from ..server.node import Node
from . import kv, leases, members, snapshot, status, txn, watch
from .fastpath import KVFastPath, MetricsMiddleware
from .forward import LeaderForwarder
from .responses import error_response, json_response

__all__ = ["KVFastPath", "MetricsMiddleware", "create_client_app", "error_response"]

log = logging.getLogger("raftkv.api")


class ClientApp(FastAPI):
    """The FastAPI app with the KV fast path in front of everything FastAPI adds per
    request (its telemetry check, body-limit and error middleware, the middleware
    stack): the fast path answers single-key and txn requests itself and hands the
    rest to FastAPI, so those layers cost the hot path nothing."""

    fast_path: KVFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is None:
            await super().__call__(scope, receive, send)
        else:
            scope["app"] = self  # as Starlette sets it: handlers reach app.state
            await fast(scope, receive, send)

    async def call_fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_client_app(node: Node) -> FastAPI:
    forwarder = LeaderForwarder(timeout=node.cfg.request_timeout + 1)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await forwarder.start()
        try:
            yield
        finally:
            await forwarder.aclose()

    app = ClientApp(
        title="raftkv", version="v1", docs_url="/docs", redoc_url=None, lifespan=lifespan
    )
    app.state.node = node
    app.state.forwarder = forwarder
    app.state.kv = handlers = kv.KVHandlers(node)
    rt = txn.RangeTxnHandlers(node)
    observe = node.metrics.http_duration
    app.add_middleware(MetricsMiddleware, observe=observe)
    _add_exception_handlers(app)
    for module in (kv, txn, leases, watch, snapshot, members, status):
        app.include_router(module.router)
    app.fast_path = KVFastPath(
        app.call_fastapi,
        handlers={"PUT": handlers.put, "GET": handlers.get, "DELETE": handlers.delete},
        observe=observe,
        exact={("POST", "/v1/txn"): rt.txn, ("POST", "/v1/range"): rt.range},
    )
    return app


def _add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(E.ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]


async def _api_error(_: Request, exc: E.ApiError) -> Response:
    return error_response(exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Never a bare 500 page, never a crash: log it and answer in the API's shape.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(E.ApiError("internal error; see the member's log"))


async def _invalid(_: Request, exc: RequestValidationError) -> Response:
    details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    return json_response(
        {"error": "invalid_request", "message": "request body is invalid", "details": details},
        422,
    )
