"""Keys: `/v1/kv/{key}` (single-key GET, PUT, DELETE) and `/v1/kv` (listing).

The single-key handlers take the raw request and build the answer by hand: at
thousands of requests per second, per-request pydantic parsing of values and generic
JSON encoding would cost more than the Raft work itself. They are registered as routes
(for `/docs`) and are also what `fastpath.KVFastPath` calls straight from ASGI.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from ..kv.command import Command, Op
from ..kv.store import EPHEMERAL_ID_PREFIX, ApplyError, ApplyResult
from ..server import errors as E
from ..server.node import Node
from . import schema as S
from .body import DRAIN_MIN_BYTES, Upload, refuse_upload
from .deps import NodeDep, ReadGuard, guard_read
from .responses import error_response, json_response

KV_PREFIX = b"/v1/kv/"
KV_ROUTE = "/v1/kv/{key:path}"
MAX_LIST_LIMIT = 10_000


def key_from(request: Request, max_bytes: int) -> str:
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


def parse_rev(value: str) -> int:
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip('"')
    if not v.isdigit() or len(v) > 20:
        raise E.BadRequest(f'If-Match must be a revision like "42", got {value!r}')
    return int(v)


def request_id(request: Request) -> bytes:
    rid = request.headers.get("x-request-id")
    if rid is None:
        # Unique, never retried, so the state machine need not remember it.
        return EPHEMERAL_ID_PREFIX + os.urandom(15)
    b = rid.encode()
    if not b or len(b) > 64 or b[:1] == EPHEMERAL_ID_PREFIX:
        raise E.BadRequest("X-Request-Id must be 1 to 64 printable characters")
    return b


def conditions(request: Request) -> tuple[int | None, bool]:
    if_match = request.headers.get("if-match")
    if_none = request.headers.get("if-none-match")
    rev = parse_rev(if_match) if if_match is not None else None
    if if_none is not None and if_none.strip() != "*":
        raise E.BadRequest('only "If-None-Match: *" is supported')
    return rev, if_none is not None


def write_response(res: ApplyResult, *, delete: bool = False) -> Response:
    if res.ok:
        body: dict[str, object] = {"revision": res.revision, "prev_revision": res.prev_revision}
        if delete:
            body["deleted"] = res.deleted
        return json_response(body, 200, {"ETag": f'"{res.revision}"'})
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


class KVHandlers:
    """The single-key handlers of one member."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.max_key_bytes = node.cfg.max_key_bytes
        self.max_value_bytes = node.cfg.max_value_bytes
        self.drain_limit = max(DRAIN_MIN_BYTES, 2 * self.max_value_bytes)

    async def put(self, request: Request) -> Response:
        upload = Upload(request.receive)
        try:
            cmd = await self._put_command(request, upload)
        except E.ApiError as exc:
            expects_continue = request.headers.get("expect", "").lower() == "100-continue"
            return refuse_upload(exc, upload, expects_continue, self.drain_limit)
        return write_response(await self.node.write(cmd))

    async def _put_command(self, request: Request, upload: Upload) -> Command:
        key = key_from(request, self.max_key_bytes)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_value_bytes:
            raise E.TooLarge(
                f"value is {length} bytes; the limit is {self.max_value_bytes}",
                code="value_too_large",
            )
        value = await upload.read(self.max_value_bytes)
        return Command(Op.PUT, key, value, request_id(request), *conditions(request))

    async def delete(self, request: Request) -> Response:
        key = key_from(request, self.max_key_bytes)
        cmd = Command(Op.DELETE, key, b"", request_id(request), *conditions(request))
        return write_response(await self.node.write(cmd), delete=True)

    async def get(self, request: Request) -> Response:
        key = key_from(request, self.max_key_bytes)
        await guard_read(self.node, request.query_params.get("consistency", "linearizable"))
        found = self.node.kv.get(key)
        if found is None:
            raise E.NotFound(f"key {key!r} not found")
        value, rev = found
        return Response(
            value,
            200,
            {"ETag": f'"{rev}"', "X-Raftkv-Revision": str(rev)},
            media_type="application/octet-stream",
        )


def get_kv(request: Request) -> KVHandlers:
    kv: KVHandlers = request.app.state.kv
    return kv


KVDep = Annotated[KVHandlers, Depends(get_kv)]


@dataclass(frozen=True, slots=True)
class Page:
    prefix: str
    start_after: str | None
    limit: int


def page(
    prefix: str = "",
    start_after: str | None = None,
    limit: Annotated[str, Query(description=f"1 to {MAX_LIST_LIMIT}")] = "100",
) -> Page:
    try:
        n = int(limit)
    except ValueError:
        raise E.BadRequest("limit must be an integer") from None
    if not 1 <= n <= MAX_LIST_LIMIT:
        raise E.BadRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    return Page(prefix, start_after, n)


router = APIRouter(tags=["keys"], responses=S.ERRORS)

_VALUE = {200: {"content": {"application/octet-stream": {}}, "description": "the value"}}


# The `key` parameter only documents the path: the handlers read the raw path.
KeyPath = Annotated[str, Path(description="the key, percent-encoded UTF-8")]


@router.put(KV_ROUTE, response_model=S.WriteResult)
async def put_key(request: Request, kv: KVDep, key: KeyPath) -> Response:
    """Write the request body as the key's value."""
    return await kv.put(request)


@router.delete(KV_ROUTE, response_model=S.DeleteResult)
async def delete_key(request: Request, kv: KVDep, key: KeyPath) -> Response:
    return await kv.delete(request)


@router.get(KV_ROUTE, response_class=Response, responses=_VALUE)  # type: ignore[arg-type]
async def get_key(request: Request, kv: KVDep, key: KeyPath) -> Response:
    return await kv.get(request)


@router.get("/v1/kv", response_model=S.KeyList)
async def list_keys(
    node: NodeDep, p: Annotated[Page, Depends(page)], _: None = ReadGuard
) -> Response:
    """Keys with a prefix, in byte order, with base64 values."""
    rows = node.kv.range(p.prefix, p.limit + 1, p.start_after)
    items = [
        {"key": k, "value": base64.b64encode(v).decode(), "revision": r}
        for k, v, r in rows[: p.limit]
    ]
    return json_response({"items": items, "more": len(rows) > p.limit})
