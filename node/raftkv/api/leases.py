"""Leases: `/v1/leases...`. Grant and revoke go through Raft from any member;
keep-alive and time-to-live are answered by the leader (only it counts lease time),
so other members forward them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..kv.lease.errors import LeaseError, NotPrimary
from ..kv.lease.lessor import Granted
from ..kv.machine import LeaseRevoked
from ..kv.proposal import LeaseGrantRequest, LeaseRevokeRequest, Proposal
from ..server import errors as E
from . import etcdjson as J
from . import schema as S
from .deps import ForwarderDep, NodeDep, guard_read
from .kv import request_id
from .outcome import check, header, store_error
from .responses import json_response
from .txn import JSON_OVERHEAD, read_json

router = APIRouter(tags=["leases"], responses={**S.ERRORS, **S.INVALID})


def _lease_id(text: str) -> int:
    if not text.isdigit() or len(text) > 19 or not 0 < int(text) < 1 << 63:
        raise E.BadRequest("a lease id is a positive 64-bit integer", code="invalid_request")
    return int(text)


@router.post("/v1/leases", status_code=201)
async def grant(request: Request, node: NodeDep) -> Response:
    """`{"ttl": seconds, "id": optional}`: the granted id and TTL (raised to the
    member's minimum TTL)."""
    body = await read_json(request, JSON_OVERHEAD)
    if not isinstance(body, dict):
        raise E.BadRequest("body must be an object", code="invalid_request")
    ttl = J.i64(body.get("ttl"), "ttl")
    lid = J.i64(body.get("id"), "id")
    if ttl <= 0:
        raise E.BadRequest("ttl must be > 0 seconds", code="invalid_request")
    if lid < 0:
        raise E.BadRequest("id must be >= 0", code="invalid_request")
    out = check(await node.write(Proposal(LeaseGrantRequest(ttl, lid), request_id(request))))
    g = out.response
    if not isinstance(g, Granted):  # pragma: no cover - a grant answers Granted, replays too
        raise E.ApiError("lease grant gave no lease")
    return json_response({"header": header(node, out.revision), "id": g.id, "ttl": g.ttl}, 201)


@router.get("/v1/leases")
async def list_leases(node: NodeDep) -> Response:
    await guard_read(node, "linearizable")
    return json_response(
        {"header": header(node), "leases": [{"id": i} for i in node.kv.lessor.leases()]}
    )


@router.delete("/v1/leases/{lease_id}")
async def revoke(request: Request, lease_id: str, node: NodeDep) -> Response:
    """Revoke the lease and delete its keys, all at one revision."""
    lid = _lease_id(lease_id)
    out = check(await node.write(Proposal(LeaseRevokeRequest(lid), request_id(request))))
    deleted = out.response.deleted if isinstance(out.response, LeaseRevoked) else 0
    return json_response({"header": header(node, out.revision), "deleted": deleted})


@router.post("/v1/leases/{lease_id}/keepalive")
async def keepalive(request: Request, lease_id: str, node: NodeDep, fwd: ForwarderDep) -> Response:
    """Renew: the lease expires a full TTL from now. 404 `lease_not_found` once it is
    gone (expired and revoked, or revoked)."""
    lid = _lease_id(lease_id)
    if not node.is_leader():
        return await fwd.forward(node, request, b"")
    try:
        ttl = await node.lease_keepalive(lid)
    except NotPrimary:
        raise E.Unavailable("leadership is changing; retry", code="not_leader") from None
    except LeaseError as exc:
        raise store_error(exc) from None
    return json_response({"header": header(node), "id": lid, "ttl": ttl})


@router.get("/v1/leases/{lease_id}")
async def time_to_live(
    request: Request, lease_id: str, node: NodeDep, fwd: ForwarderDep, keys: bool = False
) -> Response:
    """Remaining TTL (`ttl`, -1 for a lease that does not exist), granted TTL, and
    with `?keys=true` the attached keys (base64)."""
    lid = _lease_id(lease_id)
    if not node.is_leader():
        return await fwd.forward(node, request, b"")
    try:
        t = await node.lease_time_to_live(lid, keys=keys)
    except NotPrimary:
        raise E.Unavailable("leadership is changing; retry", code="not_leader") from None
    body: dict[str, object] = {
        "header": header(node),
        "id": t.id,
        "ttl": t.ttl,
        "granted_ttl": t.granted_ttl,
    }
    if keys:
        body["keys"] = [J.b64s(k) for k in t.keys]
    return json_response(body)
