"""The etcd gRPC listener of one member: grpc.aio in the member's event loop, started
and stopped by `raftkv serve` next to the HTTP servers.

Every service of etcdserverpb is registered: the methods raftkv serves map to
`EtcdServices`; the rest answer UNIMPLEMENTED with a message that says so (Auth,
apart from AuthStatus, answers etcd's "authentication is not enabled" where that is
what etcd with auth off would say).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from ..api.forward import LeaderForwarder
from ..kv.lease.errors import LeaseError
from ..kv.mvcc.errors import MVCCError
from ..raft import NONE
from ..server import errors as E
from ..server.node import Node
from . import errors as X
from .proto import rpc_pb2 as pb
from .proto import v3election_pb2, v3lock_pb2
from .recipes import Recipes
from .services import GRPC_OVERHEAD_BYTES, EtcdServices

log = logging.getLogger("raftkv.etcdapi")

HASLEADER_KEY = "hasleader"
"""clientv3's WithRequireLeader metadata: refuse with "no leader" rather than serve
from a member cut off from its leader."""


def _to_etcd(exc: BaseException) -> X.EtcdError | None:
    if isinstance(exc, X.EtcdError):
        return exc
    if isinstance(exc, E.ApiError):
        return X.from_api_error(exc)
    if isinstance(exc, MVCCError | LeaseError):
        return X.from_store_error(exc)
    return None


def _require_leader(node: Node, ctx: grpc.aio.ServicerContext[Any, Any]) -> None:
    md = ctx.invocation_metadata() or ()
    for key, value in md:
        if key == HASLEADER_KEY and value == "true":
            raw = node.raw
            if raw is None or raw.leader == NONE:
                raise X.NO_LEADER


def _unary(node: Node, fn: Callable[..., Any]) -> Callable[..., Any]:
    async def call(req: Message, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            _require_leader(node, ctx)
            return await fn(req, ctx)
        except Exception as exc:
            err = _to_etcd(exc)
            if err is None:
                log.exception("etcd API: %s failed", getattr(fn, "__name__", fn))
                err = X.EtcdError(grpc.StatusCode.INTERNAL, f"raftkv: internal error: {exc}")
            await ctx.abort(err.code, err.message)

    return call


def _stream(node: Node, fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
    async def call(
        requests: AsyncIterator[Message], ctx: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            _require_leader(node, ctx)
            async for resp in fn(requests, ctx):
                yield resp
        except Exception as exc:
            err = _to_etcd(exc)
            if err is None:
                log.exception("etcd API: %s failed", getattr(fn, "__name__", fn))
                err = X.EtcdError(grpc.StatusCode.INTERNAL, f"raftkv: internal error: {exc}")
            await ctx.abort(err.code, err.message)

    return call


def _server_stream(node: Node, fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
    async def call(req: Message, ctx: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            _require_leader(node, ctx)
            async for resp in fn(req, ctx):
                yield resp
        except Exception as exc:
            err = _to_etcd(exc)
            if err is None:
                log.exception("etcd API: %s failed", getattr(fn, "__name__", fn))
                err = X.EtcdError(grpc.StatusCode.INTERNAL, f"raftkv: internal error: {exc}")
            await ctx.abort(err.code, err.message)

    return call


def _unimplemented(service: str, method: str) -> Callable[..., Any]:
    async def call(req: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await ctx.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"raftkv: {service}.{method} is not implemented (docs/etcd.md lists what is)",
        )

    return call


def handlers(node: Node, s: EtcdServices) -> list[grpc.GenericRpcHandler]:
    """One generic handler per service of etcdserverpb, v3lockpb and v3electionpb,
    every method listed."""
    r = Recipes(s)
    served: dict[tuple[str, str], Callable[..., Any]] = {
        ("Lock", "Lock"): r.lock,
        ("Lock", "Unlock"): r.unlock,
        ("Election", "Campaign"): r.campaign,
        ("Election", "Proclaim"): r.proclaim,
        ("Election", "Leader"): r.leader,
        ("Election", "Observe"): r.observe,
        ("Election", "Resign"): r.resign,
        ("KV", "Range"): s.range,
        ("KV", "Put"): s.put,
        ("KV", "DeleteRange"): s.delete_range,
        ("KV", "Txn"): s.txn,
        ("KV", "Compact"): s.compact,
        ("Watch", "Watch"): s.watch,
        ("Lease", "LeaseGrant"): s.lease_grant,
        ("Lease", "LeaseRevoke"): s.lease_revoke,
        ("Lease", "LeaseKeepAlive"): s.lease_keepalive,
        ("Lease", "LeaseTimeToLive"): s.lease_time_to_live,
        ("Lease", "LeaseLeases"): s.lease_leases,
        ("Cluster", "MemberList"): s.member_list,
        ("Cluster", "MemberAdd"): s.member_add,
        ("Cluster", "MemberRemove"): s.member_remove,
        ("Cluster", "MemberPromote"): s.member_promote,
        ("Cluster", "MemberUpdate"): s.member_update,
        ("Maintenance", "MoveLeader"): s.move_leader,
        ("Maintenance", "Defragment"): s.defragment,
        ("Maintenance", "Snapshot"): s.snapshot,
        ("Maintenance", "Status"): s.status,
        ("Maintenance", "Alarm"): s.alarm,
        ("Maintenance", "HashKV"): s.hash_kv,
        ("Maintenance", "Hash"): s.hash,
        ("Maintenance", "Downgrade"): s.downgrade,
        ("Auth", "AuthStatus"): s.auth_status,
    }
    out: list[grpc.GenericRpcHandler] = []
    services = [
        *pb.DESCRIPTOR.services_by_name.values(),
        *v3lock_pb2.DESCRIPTOR.services_by_name.values(),
        *v3election_pb2.DESCRIPTOR.services_by_name.values(),
    ]
    for service in services:
        methods: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        for m in service.methods:
            req_cls = GetMessageClass(m.input_type)
            resp_cls = GetMessageClass(m.output_type)
            fn = served.get((service.name, m.name))
            if m.client_streaming and m.server_streaming:
                impl = _stream(node, fn) if fn else _unimplemented(service.name, m.name)
                methods[m.name] = grpc.stream_stream_rpc_method_handler(
                    impl,
                    request_deserializer=req_cls.FromString,
                    response_serializer=resp_cls.SerializeToString,
                )
            elif m.server_streaming:
                impl = _server_stream(node, fn) if fn else _unimplemented(service.name, m.name)
                methods[m.name] = grpc.unary_stream_rpc_method_handler(
                    impl,
                    request_deserializer=req_cls.FromString,
                    response_serializer=resp_cls.SerializeToString,
                )
            else:
                impl = _unary(node, fn) if fn else _unimplemented(service.name, m.name)
                methods[m.name] = grpc.unary_unary_rpc_method_handler(
                    impl,
                    request_deserializer=req_cls.FromString,
                    response_serializer=resp_cls.SerializeToString,
                )
        out.append(grpc.method_handlers_generic_handler(service.full_name, methods))
    return out


class EtcdServer:
    """`start()` binds and serves; `stop(grace)` ends in-flight calls after `grace`
    seconds (watch and keep-alive streams are cancelled: clients reconnect)."""

    def __init__(
        self,
        node: Node,
        forwarder: LeaderForwarder,
        host: str,
        port: int,
        *,
        etcd_url: str,
        credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.services = EtcdServices(node, forwarder, etcd_url)
        limit = self.services.max_request_bytes + GRPC_OVERHEAD_BYTES
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", (1 << 31) - 1),
                # etcd's server keepalive enforcement: clients may ping every 5 s.
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.so_reuseport", 0),
            ]
        )
        self.server.add_generic_rpc_handlers(handlers(node, self.services))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen for the etcd API on {address}")

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float = 1.0) -> None:
        await self.server.stop(grace)
