"""An asyncio client of etcd's v3 KV and Watch services made from the generated messages
(`raftkv.etcdapi.proto`), over one `grpc.aio` channel.

The same bytes go to raftkv's etcd port and to a real etcd, so one client serves the
benchmark that compares them (bench/grpc_bench.py) and the nemesis workload that
checks raftkv through that API (support.grpc_workload). It is deliberately thin: no
retries, no endpoint switching, no leader tracking, so that every call the caller makes
is exactly one attempt on the member it chose, which is what a latency figure and a
history of single attempts both need.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from raftkv.etcdapi.proto import rpc_pb2 as pb

M = TypeVar("M", bound=Message)

#: grpc.aio's unary-unary callable, typed loosely: grpcio ships no stubs for it.
Unary = Callable[..., Any]

#: Channel options for a client of both systems: etcd's default request limit is 1.5
#: MiB, its gRPC receive limit 2 MiB + overhead, so allow answers up to 4 MiB.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
]


def _ser(m: Message) -> bytes:
    return m.SerializeToString()


class AioEtcd:
    """`await kv.put(pb.PutRequest(...), timeout=...)` and friends, plus `watch()` for a
    Watch stream; `close()` when done. `endpoint` is `host:port` (plain gRPC)."""

    def __init__(self, endpoint: str, options: Sequence[tuple[str, int | str]] = ()) -> None:
        self.endpoint = endpoint
        self.channel = grpc.aio.insecure_channel(endpoint, options=[*CHANNEL_OPTIONS, *options])
        self._range = self._unary("KV", "Range", pb.RangeResponse)
        self._put = self._unary("KV", "Put", pb.PutResponse)
        self._delete = self._unary("KV", "DeleteRange", pb.DeleteRangeResponse)
        self._txn = self._unary("KV", "Txn", pb.TxnResponse)
        self._watch: Callable[..., Any] = self.channel.stream_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=_ser,
            response_deserializer=pb.WatchResponse.FromString,
        )

    def _unary(self, service: str, method: str, resp: type[Message]) -> Unary:
        return self.channel.unary_unary(
            f"/etcdserverpb.{service}/{method}",
            request_serializer=_ser,
            response_deserializer=resp.FromString,
        )

    async def ready(self, timeout: float) -> None:
        """Connect now (TimeoutError if the member does not answer in `timeout`)."""
        await asyncio.wait_for(self.channel.channel_ready(), timeout)

    async def range(self, req: pb.RangeRequest, timeout: float) -> pb.RangeResponse:
        out: pb.RangeResponse = await self._range(req, timeout=timeout)
        return out

    async def put(self, req: pb.PutRequest, timeout: float) -> pb.PutResponse:
        out: pb.PutResponse = await self._put(req, timeout=timeout)
        return out

    async def delete(self, req: pb.DeleteRangeRequest, timeout: float) -> pb.DeleteRangeResponse:
        out: pb.DeleteRangeResponse = await self._delete(req, timeout=timeout)
        return out

    async def txn(self, req: pb.TxnRequest, timeout: float) -> pb.TxnResponse:
        out: pb.TxnResponse = await self._txn(req, timeout=timeout)
        return out

    def watch(self, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
        """A new Watch stream (a `grpc.aio.StreamStreamCall`): `await call.write(req)`,
        `await call.read()` (`grpc.aio.EOF` at the end), `call.cancel()`."""
        return self._watch(metadata=metadata or None)

    async def close(self) -> None:
        await self.channel.close()


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with `prefix`" (clientv3's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"
