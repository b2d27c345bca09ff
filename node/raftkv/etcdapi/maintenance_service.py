"""etcd's Maintenance service, and the one Auth call raftkv answers (AuthStatus:
disabled)."""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

from ..kv.mvcc.errors import MVCCError
from ..raft import NONE
from . import convert as C
from . import errors as X
from .base import DB_SIZE_REFRESH, ETCD_VERSION, SNAPSHOT_CHUNK, ServiceBase
from .proto import rpc_pb2 as pb


class MaintenanceService(ServiceBase):
    async def move_leader(self, req: pb.MoveLeaderRequest, ctx: Any) -> pb.MoveLeaderResponse:
        """etcd's MoveLeader: only the leader moves its leadership (etcdctl sends it
        there), to a voter."""
        node = self.node
        raw = node.raw
        if raw is None or not node.is_leader():
            raise X.NOT_LEADER
        if req.targetID not in raw.conf_state.voters:
            raise X.BAD_LEADER_TRANSFEREE
        await node.transfer_leader(req.targetID)
        return pb.MoveLeaderResponse(header=self.header())

    async def defragment(self, req: pb.DefragmentRequest, ctx: Any) -> pb.DefragmentResponse:
        """Nothing to defragment: the store lives in memory, and each snapshot is
        written whole. Answered so that tools which defragment routinely go on."""
        return pb.DefragmentResponse(header=self.header())

    async def snapshot(
        self, req: pb.SnapshotRequest, ctx: Any
    ) -> AsyncIterator[pb.SnapshotResponse]:
        """A point-in-time copy in raftkv's backup format (what `GET /v1/snapshot`
        serves), zero-padded to a multiple of 512 bytes and followed by the SHA-256
        of what precedes it: the shape of etcd's snapshot (a bolt file of whole
        pages, then its hash), which etcdctl checks before it keeps the file. Not a
        bolt database: etcdutl cannot restore it (docs/etcd.md)."""
        await self.node.linearizable_barrier()
        _, data, _ = await self.node.backup()
        data += bytes(-len(data) % 512)
        data += hashlib.sha256(data).digest()
        h = self.header()
        for i in range(0, max(len(data), 1), SNAPSHOT_CHUNK):
            chunk = data[i : i + SNAPSHOT_CHUNK]
            yield pb.SnapshotResponse(
                header=h, remaining_bytes=len(data) - i - len(chunk), blob=chunk
            )

    def _db_size_estimate(self) -> int:
        at, size = self._db_size
        now = time.monotonic()
        if size == 0 or now - at > DB_SIZE_REFRESH:
            size = len(self.node.kv.snapshot())
            self._db_size = (now, size)
        return size

    async def status(self, req: pb.StatusRequest, ctx: Any) -> pb.StatusResponse:
        node = self.node
        raw = node.raw
        if raw is None:
            raise X.NOT_CAPABLE
        size = self._db_size_estimate()
        errors = [] if raw.leader != NONE else ["etcdserver: no leader"]
        return pb.StatusResponse(
            header=self.header(),
            version=ETCD_VERSION,
            dbSize=size,
            dbSizeInUse=size,
            leader=raw.leader,
            raftIndex=raw.commit,
            raftTerm=raw.term,
            raftAppliedIndex=node.kv.applied_index,
            errors=errors,
            isLearner=node.member_id in raw.conf_state.learners,
        )

    async def hash(self, req: pb.HashRequest, ctx: Any) -> pb.HashResponse:
        """A CRC-32 of the whole state machine (keys with their history, leases, the
        request-id table), as etcd hashes its whole backend: members at the same
        applied index hash the same. Like etcd's, for testing, not for production
        traffic: it serialises everything."""
        await self.node.linearizable_barrier()
        return pb.HashResponse(header=self.header(), hash=zlib.crc32(self.node.kv.snapshot()))

    async def hash_kv(self, req: pb.HashKVRequest, ctx: Any) -> pb.HashKVResponse:
        """A CRC-32 of the key space at `revision` (0: now): equal on members that
        applied the same log, so corruption shows as a difference. Not etcd's hash
        of its bolt bucket, so it cannot be compared with an etcd member's."""
        node = self.node
        # Caught up first, so that every member can hash the revision asked for.
        await node.linearizable_barrier()
        mvcc = node.kv.mvcc
        rev = req.revision if req.revision > 0 else mvcc.revision
        try:
            r = mvcc.range_request(
                C.range_request(pb.RangeRequest(key=b"\0", range_end=b"\0", revision=rev))
            )
        except MVCCError as exc:
            raise X.from_store_error(exc) from None
        h = 0
        for k in r.kvs:
            h = zlib.crc32(C.kv(k).SerializeToString(), h)
        return pb.HashKVResponse(
            header=self.header(),
            hash=h,
            compact_revision=mvcc.compact_revision,
            hash_revision=rev,
        )

    async def alarm(self, req: pb.AlarmRequest, ctx: Any) -> pb.AlarmResponse:
        """No alarm is ever raised (raftkv has no space quota yet): GET lists none,
        DEACTIVATE has nothing to clear; ACTIVATE is refused."""
        if req.action == pb.AlarmRequest.ACTIVATE:
            raise X.EtcdError(
                X.Code.UNIMPLEMENTED, "raftkv: alarms cannot be raised by hand (docs/etcd.md)"
            )
        return pb.AlarmResponse(header=self.header())

    async def auth_status(self, req: pb.AuthStatusRequest, ctx: Any) -> pb.AuthStatusResponse:
        return pb.AuthStatusResponse(header=self.header(), enabled=False, authRevision=0)
