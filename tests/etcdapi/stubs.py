"""A plain gRPC client of etcd's API for the tests: one callable per method, made
from the generated messages (the same bytes go to raftkv and to a real etcd)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from raftkv.etcdapi.proto import rpc_pb2 as pb
from raftkv.etcdapi.proto import v3election_pb2, v3lock_pb2


class EtcdStub:
    """`stub.call("KV", "Range", request)` and `stub.stream(...)`, over one channel."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        files = (pb.DESCRIPTOR, v3lock_pb2.DESCRIPTOR, v3election_pb2.DESCRIPTOR)
        self._methods = {
            (s.name, m.name): m
            for f in files
            for s in f.services_by_name.values()
            for m in s.methods
        }

    def _types(self, service: str, method: str) -> tuple[str, type[Message]]:
        m = self._methods[(service, method)]
        resp: type[Message] = GetMessageClass(m.output_type)
        return f"/{m.containing_service.full_name}/{method}", resp

    def server_stream(
        self, service: str, method: str, request: Message, timeout: float = 30
    ) -> Any:
        path, resp = self._types(service, method)
        fn: Callable[..., Any] = self.channel.unary_stream(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp.FromString,
        )
        return fn(request, timeout=timeout)

    def call(self, service: str, method: str, request: Message, timeout: float = 10) -> Any:
        path, resp = self._types(service, method)
        fn: Callable[..., Any] = self.channel.unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp.FromString,
        )
        return fn(request, timeout=timeout)

    def stream(
        self, service: str, method: str, requests: Iterator[Message], timeout: float = 30
    ) -> Iterator[Any]:
        path, resp = self._types(service, method)
        fn: Callable[..., Iterator[Any]] = self.channel.stream_stream(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp.FromString,
        )
        return fn(requests, timeout=timeout)

    def close(self) -> None:
        self.channel.close()
