"""How the gRPC workload classifies errors (`support.grpc_workload.outcome_of`), on
real calls over real sockets: a call that could not be sent is FAIL (certainly no
effect), a call that was sent and never answered is INFO (may take effect), and an
etcd refusal is FAIL. A wrong FAIL would let the checker pass a lost write; a wrong
INFO only costs search time, so the doubtful cases must land on INFO."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from raftkv.etcdapi.proto import rpc_pb2 as pb
from raftkv.verify import OpStatus
from support.grpc_workload import channel, outcome_of
from support.members import free_port


async def _put_error(endpoint: str, timeout: float) -> BaseException:
    kv = channel(endpoint)
    try:
        await kv.put(pb.PutRequest(key=b"k", value=b"v"), timeout)
    except BaseException as exc:
        return exc
    finally:
        await kv.close()
    raise AssertionError("the call succeeded")


def test_a_call_to_a_port_nobody_listens_on_is_a_failure() -> None:
    exc = asyncio.run(_put_error(f"127.0.0.1:{free_port()}", 5.0))
    assert isinstance(exc, grpc.aio.AioRpcError)
    assert exc.code() is grpc.StatusCode.UNAVAILABLE
    assert outcome_of(exc) is OpStatus.FAIL


def test_a_call_that_is_never_answered_is_indeterminate() -> None:
    """A gRPC server that takes the call and never answers: the request was sent, so
    the op may have taken effect."""

    async def never(request: bytes, context: object) -> bytes:
        await asyncio.Event().wait()
        return b""

    async def main() -> BaseException:
        server = grpc.aio.server()
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(never)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("etcdserverpb.KV", {"Put": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            return await _put_error(f"127.0.0.1:{port}", 0.5)
        finally:
            await server.stop(0)

    exc = asyncio.run(main())
    assert isinstance(exc, grpc.aio.AioRpcError)
    assert exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert outcome_of(exc) is OpStatus.INFO


_FUTURE = "etcdserver: mvcc: required revision is a future revision"
_DUPLICATE = "etcdserver: duplicate key given in txn request"
_MAY_COMMIT = "etcdserver: request timed out (raftkv: the request may still be committed; ...)"
_NOT_CONNECTED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.1.2.3:5: "
    "connection attempt timed out before receiving SETTINGS frame"
)


@pytest.mark.parametrize(
    ("code", "details", "status"),
    [
        (grpc.StatusCode.OUT_OF_RANGE, _FUTURE, OpStatus.FAIL),
        (grpc.StatusCode.INVALID_ARGUMENT, _DUPLICATE, OpStatus.FAIL),
        (grpc.StatusCode.UNAVAILABLE, _NOT_CONNECTED, OpStatus.FAIL),
        (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader", OpStatus.FAIL),
        (grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed", OpStatus.FAIL),
        (grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out", OpStatus.INFO),
        (grpc.StatusCode.UNAVAILABLE, _MAY_COMMIT, OpStatus.INFO),
        (grpc.StatusCode.UNAVAILABLE, "Socket closed", OpStatus.INFO),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", OpStatus.INFO),
        (grpc.StatusCode.CANCELLED, "", OpStatus.INFO),
        (grpc.StatusCode.INTERNAL, "", OpStatus.INFO),
    ],
)  # fmt: skip
def test_etcd_answers_are_classified(code: grpc.StatusCode, details: str, status: OpStatus) -> None:
    exc = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)
    assert outcome_of(exc) is status


def test_anything_else_is_indeterminate() -> None:
    assert outcome_of(TimeoutError()) is OpStatus.INFO
