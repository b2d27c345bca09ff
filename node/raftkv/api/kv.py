"""Keys: `/v1/kv/{key}` (single-key GET, PUT, DELETE) and `/v1/kv` (listing, range
delete).

Revisions are the MVCC store's (etcd's): a key's `ETag` is its mod revision, and
`If-Match` compares with it; reads take `?revision=N` for the key space as it was.

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

from ..kv.machine import EPHEMERAL_ID_PREFIX, Outcome
from ..kv.mvcc.errors import MVCCError
from ..kv.mvcc.kv import KeyValue
from ..kv.mvcc.ranges import ALL_KEYS_END, prefix_end
from ..kv.mvcc.requests import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)
from ..kv.proposal import Body, Proposal
from ..server import errors as E
from ..server.node import Node
from . import schema as S
from .body import DRAIN_MIN_BYTES, Upload, refuse_upload
from .deps import NodeDep, ReadGuard, guard_read
from .outcome import failure_error, header, header_fields, store_error
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


def conditions(request: Request, key: bytes) -> tuple[Compare, ...]:
    """If-Match (the key's mod revision; 0 = absent) and If-None-Match: * (absent)."""
    if_match = request.headers.get("if-match")
    if_none = request.headers.get("if-none-match")
    out: list[Compare] = []
    if if_match is not None:
        out.append(Compare(key, CompareTarget.MOD, CompareResult.EQUAL, parse_rev(if_match)))
    if if_none is not None:
        if if_none.strip() != "*":
            raise E.BadRequest('only "If-None-Match: *" is supported')
        out.append(Compare(key, CompareTarget.CREATE, CompareResult.EQUAL, 0))
    return tuple(out)


def int_param(request: Request, name: str, *, low: int = 0) -> int:
    if not request.scope.get("query_string"):
        return 0  # most requests have none: skip building QueryParams
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > 19 or int(raw) < low:
        raise E.BadRequest(f"{name} must be an integer >= {low}", code="invalid_request")
    return int(raw)


def guarded(key: bytes, write: PutRequest | DeleteRangeRequest, cmp: tuple[Compare, ...]) -> Body:
    """A write under preconditions is a txn whose failure branch reads the key, so a
    412 can say what the key's revision is."""
    if not cmp:
        return write
    return TxnRequest(cmp, (write,), (RangeRequest(key, keys_only=True),))


def _prev_rev(prev: KeyValue | None) -> int:
    return prev.mod_revision if prev is not None else 0


def write_response(node: Node, key: bytes, out: Outcome, *, delete: bool = False) -> Response:
    if out.failure is not None:
        return error_response(failure_error(out.failure))
    resp = out.response
    if isinstance(resp, TxnResponse):
        if not out.succeeded:
            rng = resp.responses[0]
            assert isinstance(rng, RangeResponse)
            return _precondition_failed(rng.kvs[0].mod_revision if rng.kvs else 0)
        resp = resp.responses[0]  # type: ignore[assignment]
    elif resp is None and not out.succeeded:  # a replay of a refused write
        found = node.kv.get(key)
        return _precondition_failed(found.mod_revision if found is not None else 0)
    body: dict[str, object] = {"revision": out.revision, "prev_revision": 0}
    if isinstance(resp, PutResponse):
        body["prev_revision"] = _prev_rev(resp.prev_kv)
    elif isinstance(resp, DeleteRangeResponse):
        body["prev_revision"] = _prev_rev(resp.prev_kvs[0] if resp.prev_kvs else None)
    if delete:
        body["deleted"] = bool(resp.deleted) if isinstance(resp, DeleteRangeResponse) else False
    body["replayed"] = out.replayed
    etag = out.revision
    if delete or isinstance(resp, DeleteRangeResponse):
        etag = 0
    headers = header_fields(node, out.revision)
    if etag:
        headers["ETag"] = f'"{etag}"'
    return json_response(body, 200, headers)


def _precondition_failed(rev: int) -> Response:
    err = E.PreconditionFailed(
        f"the key's current revision is {rev}",
        extra={"revision": rev},
    )
    err.headers["ETag"] = f'"{rev}"'
    return error_response(err)


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
        out = await self.node.write(cmd)
        return write_response(self.node, _written_key(cmd), out)

    async def _put_command(self, request: Request, upload: Upload) -> Proposal:
        key = key_from(request, self.max_key_bytes).encode()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_value_bytes:
            raise E.TooLarge(
                f"value is {length} bytes; the limit is {self.max_value_bytes}",
                code="value_too_large",
            )
        lease = int_param(request, "lease")
        cmp = conditions(request, key)
        value = await upload.read(self.max_value_bytes)
        put = PutRequest(key, value, lease, prev_kv=True)
        return Proposal(guarded(key, put, cmp), request_id(request))

    async def delete(self, request: Request) -> Response:
        key = key_from(request, self.max_key_bytes).encode()
        cmp = conditions(request, key)
        cmd = Proposal(
            guarded(key, DeleteRangeRequest(key, prev_kv=True), cmp), request_id(request)
        )
        return write_response(self.node, key, await self.node.write(cmd), delete=True)

    async def get(self, request: Request) -> Response:
        key = key_from(request, self.max_key_bytes)
        revision = int_param(request, "revision")
        await guard_read(self.node, request.query_params.get("consistency", "linearizable"))
        try:
            found = self.node.kv.get(key.encode(), revision)
        except MVCCError as exc:
            raise store_error(exc) from None
        if found is None:
            raise E.NotFound(f"key {key!r} not found")
        rev = found.mod_revision
        return Response(
            found.value,
            200,
            {
                "ETag": f'"{rev}"',
                "X-Raftkv-Revision": str(rev),
                "X-Raftkv-Create-Revision": str(found.create_revision),
                "X-Raftkv-Version": str(found.version),
                "X-Raftkv-Lease": str(found.lease),
                **header_fields(self.node, self.node.kv.revision),
            },
            media_type="application/octet-stream",
        )


def _written_key(p: Proposal) -> bytes:
    b = p.body
    if isinstance(b, TxnRequest):
        b = b.success[0]  # type: ignore[assignment]
    assert isinstance(b, PutRequest | DeleteRangeRequest)
    return b.key


def get_kv(request: Request) -> KVHandlers:
    kv: KVHandlers = request.app.state.kv
    return kv


KVDep = Annotated[KVHandlers, Depends(get_kv)]


@dataclass(frozen=True, slots=True)
class Page:
    prefix: str
    start_after: str | None
    limit: int
    revision: int


def page(
    prefix: str = "",
    start_after: str | None = None,
    limit: Annotated[str, Query(description=f"1 to {MAX_LIST_LIMIT}")] = "100",
    revision: Annotated[str, Query(description="read the keys as of this revision")] = "0",
) -> Page:
    try:
        n = int(limit)
        rev = int(revision)
    except ValueError:
        raise E.BadRequest("limit and revision must be integers") from None
    if not 1 <= n <= MAX_LIST_LIMIT:
        raise E.BadRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}")
    if rev < 0:
        raise E.BadRequest("revision must be >= 0")
    return Page(prefix, start_after, n, rev)


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """The etcd range of every key starting with `prefix` (all keys for b"")."""
    if not prefix:
        return ALL_KEYS_END, ALL_KEYS_END
    return prefix, prefix_end(prefix)


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
    """Keys with a prefix, in byte order, with base64 values, at the current revision
    or at `revision`."""
    key, end = prefix_range(p.prefix.encode())
    if p.start_after is not None:
        after = p.start_after.encode() + b"\0"
        key = max(key, after) if key != ALL_KEYS_END else after
    try:
        r = node.kv.mvcc.range_request(RangeRequest(key, end, p.revision, p.limit))
    except MVCCError as exc:
        raise store_error(exc) from None
    items = [
        {
            "key": kv.key.decode("utf-8", "replace"),
            "value": base64.b64encode(kv.value).decode(),
            "revision": kv.mod_revision,
            "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision,
            "version": kv.version,
            "lease": kv.lease,
        }
        for kv in r.kvs
    ]
    return json_response({"items": items, "more": r.more, "revision": p.revision or r.revision})


@router.delete("/v1/kv", response_model=S.RangeDeleteResult)
async def delete_range(request: Request, node: NodeDep, prefix: str) -> Response:
    """Delete every key with `prefix` (required; "" deletes every key), at one
    revision."""
    key, end = prefix_range(prefix.encode())
    cmd = Proposal(DeleteRangeRequest(key, end), request_id(request))
    out = await node.write(cmd)
    if out.failure is not None:
        raise failure_error(out.failure)
    resp = out.response
    deleted = resp.deleted if isinstance(resp, DeleteRangeResponse) else 0
    return json_response(
        {"header": header(node, out.revision), "deleted": deleted, "replayed": out.replayed}
    )
