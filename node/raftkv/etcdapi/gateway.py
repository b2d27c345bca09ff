"""etcd's JSON gateway on the HTTP client port: `POST /v3/<service>/<call>` with the
request message as proto3 JSON (bytes in base64, 64-bit integers as strings or
numbers), answered with the response message in etcd's gateway shape (original field
names, int64 as strings, default values left out), by the same handlers as the gRPC
API (`EtcdServices`), so the two cannot drift.

Errors are grpc-gateway's: `{"error", "code", "message"}` with the gRPC code's HTTP
status. `/v3/lease/keepalive` takes one request and answers one result (etcd's is a
stream: its gateway wraps each message as `{"result": ...}`, as here). `/v3/watch`
streams, as etcd's does (`gateway_watch`). `GET /health` and `GET /version` answer as etcd's do, for
tools that probe etcd that way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.protobuf.message import Message

from ..api.txn import JSON_OVERHEAD
from ..kv.lease.errors import LeaseError
from ..kv.mvcc.errors import MVCCError
from ..server import errors as E
from . import errors as X
from .gateway_watch import WatchStreamResponse
from .proto import rpc_pb2 as pb
from .proto import v3election_pb2 as el
from .proto import v3lock_pb2 as lk
from .recipes import Recipes
from .services import ETCD_VERSION, EtcdServices

router = APIRouter(tags=["etcd"], include_in_schema=False)

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.INTERNAL: 500,
}
"""grpc-gateway's mapping (runtime.HTTPStatusFromCode)."""

Call = Callable[[EtcdServices, Any], Awaitable[Message]]


def _error(err: X.EtcdError) -> Response:
    code = err.code.value[0]
    return Response(
        orjson.dumps({"error": err.message, "code": code, "message": err.message}),
        HTTP_STATUS.get(err.code, 500),
        media_type="application/json",
    )


def _encode(msg: Message) -> bytes:
    return json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None).encode()


async def _body(request: Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise X.REQUEST_TOO_LARGE
    return bytes(data)


def _route(path: str, request_type: type[Message], call: Call, *, stream: bool = False) -> None:
    async def handler(request: Request) -> Response:
        services: EtcdServices = request.app.state.etcd_services
        try:
            raw = await _body(request, services.max_request_bytes + JSON_OVERHEAD)
            req = request_type()
            try:
                json_format.Parse(raw or b"{}", req, ignore_unknown_fields=False)
            except json_format.ParseError as exc:
                raise X.EtcdError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
            resp = await call(services, req)
        except X.EtcdError as exc:
            return _error(exc)
        except E.ApiError as exc:
            return _error(X.from_api_error(exc))
        except (MVCCError, LeaseError) as exc:
            return _error(X.from_store_error(exc))
        body = _encode(resp)
        if stream:
            body = b'{"result":' + body + b"}"
        return Response(body, 200, media_type="application/json")

    handler.__name__ = "etcd_gateway_" + path.strip("/").replace("/", "_")
    router.add_api_route(path, handler, methods=["POST"])


async def _keepalive(s: EtcdServices, req: pb.LeaseKeepAliveRequest) -> Message:
    async def one() -> AsyncIterator[pb.LeaseKeepAliveRequest]:
        yield req

    async for resp in s.lease_keepalive(one(), None):
        return resp
    raise X.EtcdError(grpc.StatusCode.INTERNAL, "raftkv: keep-alive gave no answer")


_route("/v3/kv/range", pb.RangeRequest, lambda s, r: s.range(r, None))
_route("/v3/kv/put", pb.PutRequest, lambda s, r: s.put(r, None))
_route("/v3/kv/deleterange", pb.DeleteRangeRequest, lambda s, r: s.delete_range(r, None))
_route("/v3/kv/txn", pb.TxnRequest, lambda s, r: s.txn(r, None))
_route("/v3/kv/compaction", pb.CompactionRequest, lambda s, r: s.compact(r, None))
_route("/v3/lease/grant", pb.LeaseGrantRequest, lambda s, r: s.lease_grant(r, None))
for _p in ("/v3/lease/revoke", "/v3/kv/lease/revoke"):
    _route(_p, pb.LeaseRevokeRequest, lambda s, r: s.lease_revoke(r, None))
_route("/v3/lease/keepalive", pb.LeaseKeepAliveRequest, _keepalive, stream=True)
for _p in ("/v3/lease/timetolive", "/v3/kv/lease/timetolive"):
    _route(_p, pb.LeaseTimeToLiveRequest, lambda s, r: s.lease_time_to_live(r, None))
for _p in ("/v3/lease/leases", "/v3/kv/lease/leases"):
    _route(_p, pb.LeaseLeasesRequest, lambda s, r: s.lease_leases(r, None))
_route("/v3/cluster/member/list", pb.MemberListRequest, lambda s, r: s.member_list(r, None))
_route("/v3/maintenance/status", pb.StatusRequest, lambda s, r: s.status(r, None))
_route("/v3/auth/status", pb.AuthStatusRequest, lambda s, r: s.auth_status(r, None))
_route("/v3/lock/lock", lk.LockRequest, lambda s, r: Recipes(s).lock(r, None))
_route("/v3/lock/unlock", lk.UnlockRequest, lambda s, r: Recipes(s).unlock(r, None))
_route("/v3/election/campaign", el.CampaignRequest, lambda s, r: Recipes(s).campaign(r, None))
_route("/v3/election/proclaim", el.ProclaimRequest, lambda s, r: Recipes(s).proclaim(r, None))
_route("/v3/election/leader", el.LeaderRequest, lambda s, r: Recipes(s).leader(r, None))
_route("/v3/election/resign", el.ResignRequest, lambda s, r: Recipes(s).resign(r, None))


@router.post("/v3/watch")
async def watch(request: Request) -> Response:
    """etcd's Watch stream over one request (`gateway_watch`)."""
    services: EtcdServices = request.app.state.etcd_services
    return WatchStreamResponse(services, services.max_request_bytes + JSON_OVERHEAD)


@router.get("/health")
async def health(request: Request) -> Response:
    """etcd's `/health`: `{"health": "true"}` when a linearizable read succeeds (a
    leader, a quorum, this member caught up), else 503 with the reason."""
    services: EtcdServices = request.app.state.etcd_services
    try:
        await services.node.linearizable_barrier()
    except E.ApiError as exc:
        body = {"health": "false", "reason": X.from_api_error(exc).message}
        return Response(orjson.dumps(body), 503, media_type="application/json")
    return Response(b'{"health":"true","reason":""}', 200, media_type="application/json")


@router.get("/version")
async def version() -> Response:
    """etcd's `/version`: the API level raftkv speaks, for both fields."""
    body = {"etcdserver": ETCD_VERSION, "etcdcluster": ETCD_VERSION.rsplit(".", 1)[0] + ".0"}
    return Response(orjson.dumps(body), 200, media_type="application/json")
