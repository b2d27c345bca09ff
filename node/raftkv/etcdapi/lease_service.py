"""etcd's Lease service: grant and revoke through Raft from any member; keep-alive and
time-to-live answered by the leader (only it counts lease time), forwarded to it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from ..kv.lease.errors import LeaseError, LeaseNotFound, NotPrimary
from ..kv.lease.lessor import Granted
from ..kv.machine import LeaseRevoked
from ..kv.proposal import LeaseGrantRequest, LeaseRevokeRequest
from . import errors as X
from .base import ServiceBase
from .proto import rpc_pb2 as pb


class LeaseService(ServiceBase):
    async def lease_grant(self, req: pb.LeaseGrantRequest, ctx: Any) -> pb.LeaseGrantResponse:
        # etcd raises a TTL below the minimum (0 and negative included) to the
        # minimum; so does the lessor for any positive TTL.
        out = await self.propose(LeaseGrantRequest(max(req.TTL, 1), max(req.ID, 0)))
        g = out.response
        if not isinstance(g, Granted):
            raise X.EtcdError(X.Code.INTERNAL, "etcdserver: lease grant gave no lease")
        return pb.LeaseGrantResponse(header=self.header(out.revision), ID=g.id, TTL=g.ttl)

    async def lease_revoke(self, req: pb.LeaseRevokeRequest, ctx: Any) -> pb.LeaseRevokeResponse:
        if req.ID <= 0:
            raise X.LEASE_NOT_FOUND
        out = await self.propose(LeaseRevokeRequest(req.ID))
        rev = out.response.revision if isinstance(out.response, LeaseRevoked) else out.revision
        return pb.LeaseRevokeResponse(header=self.header(rev))

    async def _keepalive_one(self, lease_id: int) -> int:
        """The renewed TTL, 0 for a lease that does not exist (etcd's stream answers
        TTL 0 rather than failing)."""
        if lease_id <= 0:
            return 0
        node = self.node
        if node.is_leader():
            try:
                return await node.lease_keepalive(lease_id)
            except LeaseNotFound:
                return 0
            except NotPrimary:
                raise X.LEADER_CHANGED from None
            except LeaseError as exc:
                raise X.from_store_error(exc) from None
        body = await self._to_leader("POST", f"/v1/leases/{lease_id}/keepalive")
        return 0 if body is None else int(body["ttl"])

    async def lease_keepalive(
        self, requests: AsyncIterator[pb.LeaseKeepAliveRequest], ctx: Any
    ) -> AsyncIterator[pb.LeaseKeepAliveResponse]:
        async for req in requests:
            ttl = await self._keepalive_one(req.ID)
            yield pb.LeaseKeepAliveResponse(header=self.header(), ID=req.ID, TTL=ttl)

    async def lease_time_to_live(
        self, req: pb.LeaseTimeToLiveRequest, ctx: Any
    ) -> pb.LeaseTimeToLiveResponse:
        node = self.node
        if req.ID <= 0:
            return pb.LeaseTimeToLiveResponse(header=self.header(), ID=req.ID, TTL=-1)
        if node.is_leader():
            try:
                t = await node.lease_time_to_live(req.ID, keys=req.keys)
            except NotPrimary:
                raise X.LEADER_CHANGED from None
            return pb.LeaseTimeToLiveResponse(
                header=self.header(),
                ID=t.id,
                TTL=t.ttl,
                grantedTTL=t.granted_ttl,
                keys=list(t.keys),
            )
        keys = "?keys=true" if req.keys else ""
        body = await self._to_leader("GET", f"/v1/leases/{req.ID}{keys}")
        if body is None:
            return pb.LeaseTimeToLiveResponse(header=self.header(), ID=req.ID, TTL=-1)
        return pb.LeaseTimeToLiveResponse(
            header=self.header(),
            ID=int(body["id"]),
            TTL=int(body["ttl"]),
            grantedTTL=int(body["granted_ttl"]),
            keys=[base64.b64decode(k) for k in body.get("keys", [])],
        )

    async def lease_leases(self, req: pb.LeaseLeasesRequest, ctx: Any) -> pb.LeaseLeasesResponse:
        await self.node.linearizable_barrier()
        return pb.LeaseLeasesResponse(
            header=self.header(),
            leases=[pb.LeaseStatus(ID=i) for i in self.node.kv.lessor.leases()],
        )
