"""etcd's KV service (Range, Put, DeleteRange, Txn, Compact), as etcd's
`v3rpc/key.go`: check, one call of the member, etcd's errors."""

from __future__ import annotations

from typing import Any

from ..kv.mvcc.errors import MVCCError
from ..kv.mvcc.requests import DeleteRangeResponse, PutResponse, TxnResponse
from ..kv.proposal import CompactRequest
from . import convert as C
from . import errors as X
from .base import ServiceBase
from .proto import rpc_pb2 as pb


class KVService(ServiceBase):
    async def range(self, req: pb.RangeRequest, ctx: Any) -> pb.RangeResponse:
        r = C.range_request(req)
        await self._read_barrier(req.serializable)
        try:
            resp = self.node.kv.mvcc.range_request(r)
        except MVCCError as exc:
            raise X.from_store_error(exc) from None
        return C.range_response(resp, self.header())

    async def put(self, req: pb.PutRequest, ctx: Any) -> pb.PutResponse:
        self._check_size(req)
        p = C.put_request(req)
        self._check_keys((p,))
        out = await self.propose(p)
        if isinstance(out.response, PutResponse):
            return C.put_response(out.response, self.header())
        return pb.PutResponse(header=self.header(out.revision))

    async def delete_range(self, req: pb.DeleteRangeRequest, ctx: Any) -> pb.DeleteRangeResponse:
        d = C.delete_request(req)
        out = await self.propose(d)
        if isinstance(out.response, DeleteRangeResponse):
            return C.delete_response(out.response, self.header())
        return pb.DeleteRangeResponse(header=self.header(out.revision))

    async def txn(self, req: pb.TxnRequest, ctx: Any) -> pb.TxnResponse:
        self._check_size(req)
        t = C.txn_request(req)
        self._check_ops(t)
        self._check_keys(t.success)
        self._check_keys(t.failure)
        out = await self.propose(t)
        if isinstance(out.response, TxnResponse):
            return C.txn_response(out.response, self.header())
        return pb.TxnResponse(header=self.header(out.revision), succeeded=out.succeeded)

    async def compact(self, req: pb.CompactionRequest, ctx: Any) -> pb.CompactionResponse:
        out = await self.propose(CompactRequest(req.revision))
        return pb.CompactionResponse(header=self.header(out.revision))
