"""etcd's Maintenance service, and the one Auth call raftkv answers (AuthStatus:
disabled)."""

from __future__ import annotations

import hashlib
import re
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

from ..kv.alarm import AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType
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
        written whole. What it does do is etcd's defrag's visible effect: the size
        (Status' dbSize, what the space quota checks) is measured again, so space a
        compaction freed counts at once (etcd: compact, defrag, `alarm disarm`)."""
        await self.node.measure_space()
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

    async def _db_size_estimate(self) -> int:
        """The member's running size estimate (`kv.alarm.SpaceEstimate`, what the
        quota checks), measured exactly again when the last measure is older than
        DB_SIZE_REFRESH, so that compacted space shows."""
        at, _ = self._db_size
        now = time.monotonic()
        if at == 0.0 or now - at > DB_SIZE_REFRESH:
            self._db_size = (now, 0)
            await self.node.measure_space()
        return self.node.kv.space.bytes

    async def status(self, req: pb.StatusRequest, ctx: Any) -> pb.StatusResponse:
        node = self.node
        raw = node.raw
        if raw is None:
            raise X.NOT_CAPABLE
        size = await self._db_size_estimate()
        errors = [] if raw.leader != NONE else ["etcdserver: no leader"]
        errors += [a.text() for a in node.kv.alarms.get()]
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
        """etcd's Alarm (`kv.alarm`): GET lists the active alarms of a type (NONE:
        all) after a ReadIndex, as current as etcd's, which puts GET through Raft;
        ACTIVATE and DEACTIVATE change the replicated alarm set through Raft and answer
        the alarm they touched. DEACTIVATE does not check the space (etcd does not
        either): a write still over the quota raises NOSPACE again."""
        if req.action not in (
            pb.AlarmRequest.GET,
            pb.AlarmRequest.ACTIVATE,
            pb.AlarmRequest.DEACTIVATE,
        ):
            raise X.EtcdError(X.Code.INVALID_ARGUMENT, "etcdserver: unknown alarm action")
        if int(req.alarm) not in AlarmType.__members__.values():
            raise X.EtcdError(X.Code.INVALID_ARGUMENT, "etcdserver: unknown alarm type")
        if req.action == pb.AlarmRequest.GET:
            await self.node.linearizable_barrier()
            members = self.node.kv.alarms.get(AlarmType(req.alarm))
            return pb.AlarmResponse(header=self.header(), alarms=[_alarm(m) for m in members])
        out = await self.propose(
            AlarmRequest(AlarmAction(req.action), req.memberID, AlarmType(req.alarm))
        )
        touched = out.response.alarms if isinstance(out.response, AlarmResponse) else ()
        return pb.AlarmResponse(
            header=self.header(out.revision), alarms=[_alarm(m) for m in touched]
        )

    async def downgrade(self, req: pb.DowngradeRequest, ctx: Any) -> pb.DowngradeResponse:
        """etcd 3.5's Downgrade, answered as by a cluster that cannot downgrade:
        raftkv speaks the 3.5 API and has no earlier version to become, so every
        well-formed target is "invalid" (etcd's answer to a target it cannot go to),
        a malformed one is refused as etcd refuses it, and there is never a downgrade
        job to cancel."""
        D = pb.DowngradeRequest
        if req.action not in (D.VALIDATE, D.ENABLE, D.CANCEL):
            raise X.EtcdError(X.Code.UNKNOWN, "etcdserver: unknown method")
        if req.action == D.CANCEL:
            raise X.EtcdError(X.Code.FAILED_PRECONDITION, "etcdserver: no inflight downgrade job")
        v = req.version
        if not (_SEMVER.fullmatch(v) or _SEMVER.fullmatch(v + ".0")):
            raise X.EtcdError(
                X.Code.INVALID_ARGUMENT, "etcdserver: wrong downgrade target version format"
            )
        await self.node.linearizable_barrier()
        raise X.EtcdError(X.Code.INVALID_ARGUMENT, "etcdserver: invalid downgrade target version")

    async def auth_status(self, req: pb.AuthStatusRequest, ctx: Any) -> pb.AuthStatusResponse:
        return pb.AuthStatusResponse(header=self.header(), enabled=False, authRevision=0)


_SEMVER = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
"""What go-semver's NewVersion takes (etcd also tries the text with ".0" added)."""


def _alarm(m: AlarmMember) -> pb.AlarmMember:
    return pb.AlarmMember(memberID=m.member_id, alarm=m.alarm.name)
