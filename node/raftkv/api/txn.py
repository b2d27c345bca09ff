"""etcd's KV calls over JSON: `POST /v1/range`, `POST /v1/txn`, `POST /v1/compact`.

Bodies and answers are etcd's JSON gateway shapes (`api.etcdjson`), so that what a
user reads in etcd's API reference works here; every answer carries the header.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..kv.mvcc.errors import MVCCError
from ..kv.mvcc.requests import PutRequest, RequestOp, TxnRequest, TxnResponse
from ..kv.proposal import CompactRequest, Proposal
from ..server import errors as E
from ..server.node import Node
from . import etcdjson as J
from . import schema as S
from .deps import NodeDep, guard_read
from .kv import request_id
from .outcome import check, header, store_error
from .responses import json_response

router = APIRouter(tags=["kv"], responses={**S.ERRORS, **S.INVALID})

JSON_OVERHEAD = 1 << 20
"""Room for the JSON around the values of one request (keys, field names, base64)."""


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refused past `limit` bytes (413) or when it is not JSON
    (400), before anything is proposed."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise E.TooLarge(f"body is {length} bytes; the limit is {limit}", code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise E.TooLarge(f"body is over the limit of {limit} bytes", code="body_too_large")
    try:
        return orjson.loads(body) if body else {}
    except orjson.JSONDecodeError as exc:
        raise E.BadRequest(f"body is not JSON: {exc}", code="invalid_request") from None


def body_limit(node: Node) -> int:
    return 2 * node.cfg.max_value_bytes + JSON_OVERHEAD


def check_sizes(node: Node, ops: tuple[RequestOp, ...]) -> None:
    """The member's key and value limits hold inside a txn as on `PUT /v1/kv`."""
    for op in ops:
        if isinstance(op, PutRequest):
            if len(op.key) > node.cfg.max_key_bytes:
                raise E.TooLarge(
                    f"key is {len(op.key)} bytes; the limit is {node.cfg.max_key_bytes}",
                    code="key_too_large",
                )
            if len(op.value) > node.cfg.max_value_bytes:
                raise E.TooLarge(
                    f"value is {len(op.value)} bytes; the limit is {node.cfg.max_value_bytes}",
                    code="value_too_large",
                )
        elif isinstance(op, TxnRequest):
            check_sizes(node, op.success)
            check_sizes(node, op.failure)


class RangeTxnHandlers:
    """`/v1/range` and `/v1/txn` of one member: plain functions of the request, so the
    ASGI fast path (`fastpath.KVFastPath`) can call them without FastAPI's routing
    and dependency layers, as it does for the single-key routes."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def range(self, request: Request) -> Response:
        return await _range(request, self.node)

    async def txn(self, request: Request) -> Response:
        return await _txn(request, self.node)


@router.post("/v1/range")
async def range_keys(request: Request, node: NodeDep) -> Response:
    """etcd's Range: `key`, `range_end` (base64; etcd's conventions), `revision`,
    `limit`, `keys_only`, `count_only`, `sort_order`, `sort_target`, the min/max
    mod and create revisions, and `serializable` (skip the linearizable barrier)."""
    return await _range(request, node)


async def _range(request: Request, node: Node) -> Response:
    body = await read_json(request, JSON_OVERHEAD)
    if not isinstance(body, dict):
        raise E.BadRequest("body must be an object", code="invalid_request")
    req = J.range_request(body, "range")
    serializable = J.flag(body.get("serializable"), "range.serializable")
    await guard_read(node, "serializable" if serializable else "linearizable")
    try:
        r = node.kv.mvcc.range_request(req)
    except MVCCError as exc:
        raise store_error(exc) from None
    return json_response(J.range_json(r, header(node, r.revision)))


@router.post("/v1/txn")
async def txn(request: Request, node: NodeDep) -> Response:
    """etcd's Txn: `compare`, then `success` or `failure` ops, atomically at one
    revision. Retries with the same X-Request-Id are applied once."""
    return await _txn(request, node)


async def _txn(request: Request, node: Node) -> Response:
    body = await read_json(request, body_limit(node))
    req = J.txn_request(body)
    check_sizes(node, req.success)
    check_sizes(node, req.failure)
    out = check(await node.write(Proposal(req, request_id(request))))
    h = header(node, out.revision)
    if out.replayed or not isinstance(out.response, TxnResponse):
        return json_response(
            {"header": h, "succeeded": out.succeeded, "responses": [], "replayed": True}
        )
    return json_response({**J.txn_json(out.response, h), "replayed": False})


@router.post("/v1/compact")
async def compact(request: Request, node: NodeDep) -> Response:
    """etcd's Compact: forget the history below `revision` on every member. Reads
    and watches at older revisions then fail with `compacted`."""
    body = await read_json(request, JSON_OVERHEAD)
    if not isinstance(body, dict):
        raise E.BadRequest("body must be an object", code="invalid_request")
    rev = J.i64(body.get("revision"), "revision")
    if rev <= 0:
        raise E.BadRequest("revision must be > 0", code="invalid_request")
    out = check(await node.write(Proposal(CompactRequest(rev), request_id(request))))
    return json_response({"header": header(node, out.revision)})
