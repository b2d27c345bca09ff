"""The client API (DESIGN.md): a FastAPI app whose handlers only translate HTTP to
`Node` calls. The KV routes take the raw request and build the response by hand: at
thousands of requests per second, per-request pydantic parsing of values and generic
JSON encoding would cost more than the Raft work itself.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import unquote_to_bytes

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..kv.command import Command, Op
from ..kv.store import EPHEMERAL_ID_PREFIX, ApplyError, ApplyResult
from ..raft import ConfChange, ConfChangeType
from ..server import errors as E
from ..server.membership import InvalidURL, MemberInfo, validate_url
from ..server.node import Node

log = logging.getLogger("raftkv.api")

KV_PREFIX = b"/v1/kv/"
MAX_LIST_LIMIT = 10_000
SNAPSHOT_CHUNK = 1 << 20


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def error_response(err: E.ApiError) -> Response:
    return _json(err.body(), err.status, err.headers)


class AddMember(BaseModel):
    peer_urls: list[str] = Field(min_length=1, max_length=8)
    name: str | None = Field(default=None, max_length=253)
    learner: bool = False
    id: int | None = Field(default=None, gt=0, lt=2**63)
    client_urls: list[str] = Field(default_factory=list, max_length=8)


class Transfer(BaseModel):
    to: int | None = Field(default=None, gt=0, lt=2**63)


def _key_from(request: Request, max_bytes: int) -> str:
    """The key is taken from the raw path, so a key that is not valid UTF-8 is refused
    instead of being silently mangled into replacement characters."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    raw = raw.split(b"?", 1)[0]
    if not raw.startswith(KV_PREFIX):
        raise E.BadRequest("missing key")
    kb = unquote_to_bytes(raw[len(KV_PREFIX) :])
    if not kb:
        raise E.BadRequest("the key must not be empty", code="invalid_key")
    if len(kb) > max_bytes:
        raise E.TooLarge(f"key is {len(kb)} bytes; the limit is {max_bytes}", code="key_too_large")
    try:
        return kb.decode("utf-8")
    except UnicodeDecodeError:
        raise E.BadRequest("the key must be valid UTF-8", code="invalid_key") from None


def _parse_rev(value: str) -> int:
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    if not v.isdigit() or len(v) > 20:
        raise E.BadRequest(f'If-Match must be a revision like "42", got {value!r}')
    return int(v)


def _request_id(request: Request) -> bytes:
    rid = request.headers.get("x-request-id")
    if rid is None:
        # Unique, never retried, so the state machine need not remember it.
        return EPHEMERAL_ID_PREFIX + os.urandom(15)
    b = rid.encode()
    if not b or len(b) > 64 or b[:1] == EPHEMERAL_ID_PREFIX:
        raise E.BadRequest("X-Request-Id must be 1 to 64 printable characters")
    return b


def _write_response(res: ApplyResult, *, delete: bool = False) -> Response:
    if res.ok:
        body: dict[str, object] = {"revision": res.revision, "prev_revision": res.prev_revision}
        if delete:
            body["deleted"] = res.deleted
        return _json(body, 200, {"ETag": f'"{res.revision}"'})
    if res.error == ApplyError.PRECONDITION_FAILED:
        err = E.PreconditionFailed(
            f"the key's current revision is {res.revision}",
            extra={"revision": res.revision},
        )
        err.headers["ETag"] = f'"{res.revision}"'
        return error_response(err)
    return error_response(
        E.Conflict("this X-Request-Id was used for another write", code="request_id_conflict")
    )


def create_client_app(node: Node) -> FastAPI:
    cfg = node.cfg
    app = FastAPI(title="raftkv", version="v1", docs_url="/docs", redoc_url=None)
    metrics = node.metrics
    app.add_middleware(MetricsMiddleware, observe=metrics.http_duration)

    @app.exception_handler(E.ApiError)
    async def _api_error(_: Request, exc: E.ApiError) -> Response:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Never a bare 500 page, never a crash: log it and answer in the API's shape.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(E.ApiError("internal error; see the member's log"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return _json(
            {
                "error": "invalid_request",
                "message": "request body is invalid",
                "details": _errs(exc),
            },
            422,
        )

    # --- keys --------------------------------------------------------------------

    async def _read_guard(request: Request) -> None:
        consistency = request.query_params.get("consistency", "linearizable")
        if consistency == "linearizable":
            await node.linearizable_barrier()
        elif consistency != "serializable":
            raise E.BadRequest("consistency must be linearizable or serializable")
        elif node.raw is None:
            raise E.Unavailable("member is joining the cluster", code="joining")
        elif node.removed:
            raise E.Gone(f"member {node.member_id} was removed from the cluster")

    @app.put("/v1/kv/{key:path}", response_class=Response)
    async def put_key(request: Request) -> Response:
        key = _key_from(request, cfg.max_key_bytes)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cfg.max_value_bytes:
            raise E.TooLarge(
                f"value is {length} bytes; the limit is {cfg.max_value_bytes}",
                code="value_too_large",
            )
        value = await _read_body(request, cfg.max_value_bytes)
        cmd = Command(Op.PUT, key, value, _request_id(request), *_conditions(request))
        return _write_response(await node.write(cmd))

    @app.delete("/v1/kv/{key:path}", response_class=Response)
    async def delete_key(request: Request) -> Response:
        key = _key_from(request, cfg.max_key_bytes)
        cmd = Command(Op.DELETE, key, b"", _request_id(request), *_conditions(request))
        return _write_response(await node.write(cmd), delete=True)

    @app.get("/v1/kv/{key:path}", response_class=Response)
    async def get_key(request: Request) -> Response:
        key = _key_from(request, cfg.max_key_bytes)
        await _read_guard(request)
        found = node.kv.get(key)
        if found is None:
            raise E.NotFound(f"key {key!r} not found")
        value, rev = found
        return Response(
            value,
            200,
            {"ETag": f'"{rev}"', "X-Raftkv-Revision": str(rev)},
            media_type="application/octet-stream",
        )

    # Outermost: single-key reads and writes skip FastAPI's routing, dependency and
    # exception layers (a quarter of the leader's CPU under load) but run the very
    # handlers registered above, so behaviour and errors are identical.
    app.add_middleware(
        KVFastPath,
        handlers={"PUT": put_key, "GET": get_key, "DELETE": delete_key},
        observe=metrics.http_duration,
    )

    @app.get("/v1/kv", response_class=Response)
    async def list_keys(request: Request) -> Response:
        q = request.query_params
        prefix = q.get("prefix", "")
        start_after = q.get("start_after")
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise E.BadRequest("limit must be an integer") from None
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise E.BadRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        await _read_guard(request)
        rows = node.kv.range(prefix, limit + 1, start_after)
        items = [
            {"key": k, "value": base64.b64encode(v).decode(), "revision": r}
            for k, v, r in rows[:limit]
        ]
        return _json({"items": items, "more": len(rows) > limit})

    # --- backup --------------------------------------------------------------------

    @app.get("/v1/snapshot", response_class=Response)
    async def snapshot(request: Request) -> Response:
        """A point-in-time copy of the state machine (KVStore snapshot format, which
        carries its own CRC32; the SHA-256 header covers the bytes as sent).
        Linearizable by default: the copy includes every write completed before the
        request. `raftkv snapshot restore` turns it into a new one-member cluster."""
        await _read_guard(request)
        index, data, digest = await node.backup()

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), SNAPSHOT_CHUNK):
                yield data[i : i + SNAPSHOT_CHUNK]

        return StreamingResponse(
            chunks(),
            200,
            {
                "Content-Length": str(len(data)),
                "Content-Disposition": f'attachment; filename="raftkv-{index}.snapshot"',
                "X-Raftkv-Applied-Index": str(index),
                "X-Raftkv-Sha256": digest,
                "X-Raftkv-Member-Id": str(node.member_id),
                "X-Raftkv-Cluster-Id": cfg.cluster_id,
                "Cache-Control": "no-store",
            },
            media_type="application/octet-stream",
        )

    # --- members -----------------------------------------------------------------

    async def _forward(request: Request, body: bytes | None = None) -> Response:
        """Membership and transfers go through the leader; any member accepts them and
        forwards the request over the leader's client URL."""
        url = node.leader_client_url()
        if url is None or node.is_leader():
            raise E.Unavailable("no leader is known; retry shortly", code="no_leader")
        if request.headers.get("x-raftkv-forwarded"):
            raise E.Unavailable("leadership is changing; retry shortly", code="not_leader")
        async with httpx.AsyncClient(timeout=cfg.request_timeout + 1) as client:
            try:
                r = await client.request(
                    request.method,
                    url + request.url.path,
                    content=body if body is not None else await request.body(),
                    headers={"content-type": "application/json", "x-raftkv-forwarded": "1"},
                )
            except httpx.HTTPError as exc:
                raise E.Unavailable(f"could not reach the leader: {exc}", code="no_leader") from exc
        headers = {k: v for k, v in r.headers.items() if k.lower() in ("retry-after", "etag")}
        return Response(r.content, r.status_code, headers, media_type="application/json")

    def _member_view(mid: int) -> dict[str, object]:
        raw = node.raw
        assert raw is not None
        for m in node.registry.view(raw.conf_state):
            if m["id"] == mid:
                return m
        raise E.NotFound(f"member {mid} is not in the cluster")

    @app.get("/v1/members")
    async def list_members() -> Response:
        raw = node.raw
        if raw is None:
            raise E.Unavailable("member is joining the cluster", code="joining")
        return _json({"members": node.registry.view(raw.conf_state)})

    @app.post("/v1/members")
    async def add_member(request: Request, body: AddMember) -> Response:
        if not node.is_leader():
            return await _forward(request, body.model_dump_json().encode())
        try:
            peers = tuple(validate_url(u) for u in body.peer_urls)
            clients = tuple(validate_url(u) for u in body.client_urls)
        except InvalidURL as exc:
            raise E.BadRequest(str(exc), code="invalid_url") from None
        raw = node.raw
        assert raw is not None
        for info in node.registry.members.values():
            if set(info.peer_urls) & set(peers):
                raise E.Conflict(
                    f"peer URL already belongs to member {info.id}", code="member_exists"
                )
        if body.id is not None:
            if body.id in node.registry.removed:
                raise E.Conflict(
                    f"member id {body.id} was removed and is never reused", code="id_removed"
                )
            if body.id in node.registry.members or body.id in raw.conf_state.members():
                raise E.Conflict(f"member id {body.id} is in use", code="member_exists")
            mid = body.id
        else:
            mid = node.allocate_member_id()
        info = MemberInfo(mid, body.name or f"member-{mid}", peers, clients)
        kind = ConfChangeType.ADD_LEARNER if body.learner else ConfChangeType.ADD_NODE
        await node.change_membership(ConfChange(kind, mid, info.encode()))
        return _json({"member": _member_view(mid)}, 201)

    @app.post("/v1/members/{member_id}/promote")
    async def promote_member(request: Request, member_id: int) -> Response:
        if not node.is_leader():
            return await _forward(request, b"")
        raw = node.raw
        assert raw is not None
        if member_id not in raw.conf_state.members():
            raise E.NotFound(f"member {member_id} is not in the cluster")
        if member_id not in raw.conf_state.learners:
            raise E.Conflict(f"member {member_id} is already a voter", code="not_a_learner")
        await node.change_membership(ConfChange(ConfChangeType.ADD_NODE, member_id))
        return _json({"member": _member_view(member_id)})

    @app.delete("/v1/members/{member_id}")
    async def remove_member(request: Request, member_id: int) -> Response:
        if not node.is_leader():
            return await _forward(request, b"")
        raw = node.raw
        assert raw is not None
        if member_id not in raw.conf_state.members():
            raise E.NotFound(f"member {member_id} is not in the cluster")
        await node.change_membership(ConfChange(ConfChangeType.REMOVE_NODE, member_id))
        return _json({"removed": member_id})

    @app.post("/v1/leader/transfer")
    async def transfer(request: Request) -> Response:
        raw_body = await request.body()
        try:
            body = Transfer.model_validate_json(raw_body or b"{}")
        except ValueError as exc:
            raise E.BadRequest(f"invalid body: {exc}", code="invalid_request") from None
        if not node.is_leader():
            return await _forward(request, raw_body)
        raw = node.raw
        assert raw is not None
        to = body.to
        if to is None:
            to = node._best_transfer_target()
            if to == 0:
                raise E.Unavailable("no caught-up voter to transfer to", code="no_target")
        elif to not in raw.conf_state.members():
            raise E.NotFound(f"member {to} is not in the cluster")
        leader = await node.transfer_leader(to)
        return _json({"leader": leader})

    # --- status and probes ---------------------------------------------------------

    @app.get("/v1/status")
    async def status() -> Response:
        return _json(node.status())

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"ok": True})

    @app.get("/readyz")
    async def readyz() -> Response:
        if node.is_ready():
            return _json({"ready": True})
        return _json({"ready": False, "status": _brief(node)}, 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _brief(node: Node) -> dict[str, object]:
    raw = node.raw
    if raw is None:
        return {}
    return {
        "removed": node.removed,
        "leader": raw.leader,
        "member": node.member_id in raw.conf_state.members(),
        "applied": node.kv.applied_index,
        "commit": raw.commit,
    }


def _conditions(request: Request) -> tuple[int | None, bool]:
    if_match = request.headers.get("if-match")
    if_none = request.headers.get("if-none-match")
    rev = _parse_rev(if_match) if if_match is not None else None
    if if_none is not None and if_none.strip() != "*":
        raise E.BadRequest('only "If-None-Match: *" is supported')
    return rev, if_none is not None


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise E.TooLarge(f"value exceeds the limit of {limit} bytes", code="value_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


KV_ROUTE = "/v1/kv/{key:path}"


class KVFastPath:
    """Serves `/v1/kv/<key>` straight from ASGI with the app's own handlers; every
    other request goes to the FastAPI app as usual."""

    def __init__(
        self,
        app: ASGIApp,
        handlers: dict[str, Callable[[Request], Awaitable[Response]]],
        observe: Histogram,
    ) -> None:
        self.app = app
        self.handlers = handlers
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        if scope["type"] == "http" and scope["path"].startswith("/v1/kv/"):
            handler = self.handlers.get(scope["method"])
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
        self.observe.labels(KV_ROUTE, scope["method"], str(response.status_code)).observe(
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


def _errs(exc: RequestValidationError) -> list[dict[str, object]]:
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
