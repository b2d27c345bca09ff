"""The shared part of etcd's gRPC services over one member (`ServiceBase`): header,
request checks, the write path, reads after the barrier, calls on the leader."""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx
from google.protobuf.message import Message

from ..api.forward import FORWARDED_HEADER, LeaderForwarder
from ..kv.machine import EPHEMERAL_ID_PREFIX, Outcome
from ..kv.mvcc.requests import PutRequest, RequestOp, TxnRequest
from ..kv.proposal import Body, Proposal
from ..raft import NONE
from ..server.membership import check_serving
from ..server.node import Node
from . import errors as X
from .proto import rpc_pb2 as pb

log = logging.getLogger("raftkv.etcdapi")

ETCD_VERSION = "3.5.0"
"""What Status reports: the etcd API level raftkv speaks (clients gate features on
it; 3.5 has everything the adapter serves)."""

MAX_REQUEST_BYTES = 3 * (1 << 19)
"""etcd's default --max-request-bytes, 1.5 MiB: Kubernetes objects reach it."""

GRPC_OVERHEAD_BYTES = 512 * 1024
"""etcd's grpcOverheadBytes: the transport's receive limit is the request limit plus
this, so that an over-limit request gets etcd's error, not a transport error."""

MAX_WATCH_EVENTS_PER_RESPONSE = 1000
SNAPSHOT_CHUNK = 32 * 1024
"""etcd's snapshot stream sends 32 KiB blobs."""
DB_SIZE_REFRESH = 10.0
"""Seconds a Status answer may reuse the last measured snapshot size: measuring
serialises the whole state machine."""


class ServiceBase:
    """What every service's handlers share: the member, the leader forwarder, the
    response header, the request checks and the write path."""

    def __init__(self, node: Node, forwarder: LeaderForwarder, etcd_url: str) -> None:
        self.node = node
        self.forwarder = forwarder
        self.etcd_url = etcd_url
        self._cluster_id = int(node.cfg.cluster_id, 16) & ((1 << 64) - 1)
        self.max_request_bytes = max(
            MAX_REQUEST_BYTES, node.cfg.max_value_bytes + node.cfg.max_key_bytes + 1024
        )
        self._db_size = (0.0, 0)
        self._leader_grace = 3 * node.cfg.election_ticks * node.cfg.tick_ms / 1000
        """How long a watch with `hasleader` outlives the member's leader."""

    def header(self, revision: int | None = None) -> pb.ResponseHeader:
        """etcd's ResponseHeader: cluster id (raftkv's hex id as the uint64 it
        spells), member id, store revision (current unless given), Raft term."""
        node = self.node
        raw = node.raw
        return pb.ResponseHeader(
            cluster_id=self._cluster_id,
            member_id=node.member_id,
            revision=node.kv.revision if revision is None else revision,
            raft_term=raw.term if raw is not None else 0,
        )

    def _check_size(self, request: Message) -> None:
        if request.ByteSize() > self.max_request_bytes:
            raise X.REQUEST_TOO_LARGE

    def _check_ops(self, txn: TxnRequest) -> None:
        """etcd refuses more than --max-txn-ops ops in one txn (per branch, with the
        compares) before proposing; the state machine refuses it too."""
        limit = self.node.cfg.max_txn_ops
        if len(txn.compare) > limit or len(txn.success) > limit or len(txn.failure) > limit:
            raise X.TOO_MANY_OPS
        for op in (*txn.success, *txn.failure):
            if isinstance(op, TxnRequest):
                self._check_ops(op)

    def _check_keys(self, ops: tuple[RequestOp, ...]) -> None:
        for op in ops:
            if isinstance(op, PutRequest) and len(op.key) > self.node.cfg.max_key_bytes:
                raise X.REQUEST_TOO_LARGE
            if isinstance(op, TxnRequest):
                self._check_keys(op.success)
                self._check_keys(op.failure)

    async def propose(self, body: Body) -> Outcome:
        """Through Raft from this member; the outcome once applied here, or the
        state machine's refusal as etcd's error. gRPC calls carry no request id, so
        each gets a fresh one nobody retries (etcd has no retry dedup either)."""
        out = await self.node.write(Proposal(body, EPHEMERAL_ID_PREFIX + os.urandom(15)))
        if out.failure is not None:
            raise X.from_failure(out.failure)
        return out

    async def _read_barrier(self, serializable: bool) -> None:
        """Linearizable: wait for ReadIndex. Serializable: the local state of a
        member that has joined and was not removed."""
        node = self.node
        if serializable:
            check_serving(
                joined=node.raw is not None,
                removed=node.removed,
                member_id=node.member_id,
                stopping=False,
            )
        else:
            await node.linearizable_barrier()

    async def _to_leader(self, method: str, path: str) -> dict[str, Any] | None:
        """A lease call on the leader's native API: its JSON, or None for 404."""
        node = self.node
        url = node.leader_client_url()
        if url is None or node.raw is None or node.raw.leader == NONE:
            raise X.NO_LEADER
        try:
            r = await self.forwarder.client().request(
                method, url + path, headers={FORWARDED_HEADER: "1"}
            )
        except httpx.HTTPError:
            raise X.NO_LEADER from None
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise X.LEADER_CHANGED
        out: dict[str, Any] = r.json()
        return out


def requires_leader(ctx: Any) -> bool:
    """Whether the call carries clientv3's `hasleader=true` metadata."""
    if ctx is None:
        return False
    md = ctx.invocation_metadata() or ()
    return any(k == "hasleader" and v == "true" for k, v in md)
