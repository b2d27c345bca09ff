"""etcd's Watch service: one bidirectional stream over one `WatchStream` of the
member's watch hub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..kv.watch.hub import WatchStream
from ..kv.watch.response import Filter, WatchResponse
from ..raft import NONE
from . import convert as C
from . import errors as X
from .base import (
    GRPC_OVERHEAD_BYTES,
    MAX_WATCH_EVENTS_PER_RESPONSE,
    ServiceBase,
    requires_leader,
)
from .proto import rpc_pb2 as pb


class WatchService(ServiceBase):
    async def watch(
        self, requests: AsyncIterator[pb.WatchRequest], ctx: Any
    ) -> AsyncIterator[pb.WatchResponse]:
        """One etcd watch stream over one `WatchStream` of the hub: a reader task
        applies create/cancel/progress requests as they come; this generator sends
        whatever the hub has, whenever the member signals new events."""
        node = self.node
        if node.raw is None or node.removed or node.stopping:
            raise X.NOT_CAPABLE
        stream = node.watch.new_stream()
        signal = node.add_watch_waiter()
        done = asyncio.Event()
        fragmented: set[int] = set()
        """Watches created with `fragment`: their large responses are split."""

        async def read() -> None:
            try:
                async for req in requests:
                    self._watch_request(stream, req, fragmented)
                    signal.set()
            finally:
                done.set()
                signal.set()

        reader = asyncio.create_task(read())
        watch_leader = requires_leader(ctx)
        leaderless_since: float | None = None
        loop = asyncio.get_running_loop()
        try:
            while not node.stopping and not node.removed:
                if watch_leader:
                    # clientv3's WithRequireLeader on a watch: end the stream once this
                    # member has had no leader for a while (etcd's monitorLeader), so
                    # the client re-watches through a member that has one.
                    if node.raw is not None and node.raw.leader != NONE:
                        leaderless_since = None
                    elif leaderless_since is None:
                        leaderless_since = loop.time()
                    elif loop.time() - leaderless_since > self._leader_grace:
                        raise X.NO_LEADER
                signal.clear()
                out = stream.drain(MAX_WATCH_EVENTS_PER_RESPONSE)
                for r in out:
                    resp = self._watch_response(r)
                    if r.watch_id in fragmented:
                        limit = self.max_request_bytes + GRPC_OVERHEAD_BYTES
                        for part in fragments(resp, limit):
                            yield part
                    else:
                        yield resp
                if out:
                    continue
                # A client that closes its side still gets its watches' events, as
                # from etcd (which ends the stream only when the call ends); a
                # request that could not be read ends it.
                if done.is_set() and reader.done() and reader.exception() is not None:
                    return
                await signal.wait()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            node.remove_watch_waiter(signal)
            stream.close()

    def _watch_request(
        self, stream: WatchStream, req: pb.WatchRequest, fragmented: set[int]
    ) -> None:
        which = req.WhichOneof("request_union")
        if which == "create_request":
            c = req.create_request
            filters = [Filter(f) for f in c.filters if f in (0, 1)]
            wid = stream.create(
                c.key,
                c.range_end,
                start_revision=max(c.start_revision, 0),
                filters=filters,
                prev_kv=c.prev_kv,
                progress_notify=c.progress_notify,
                watch_id=c.watch_id if c.watch_id > 0 else None,
            )
            if c.fragment:
                fragmented.add(wid)
            else:
                fragmented.discard(wid)  # an id may be reused after a cancel
        elif which == "cancel_request":
            stream.cancel(req.cancel_request.watch_id)
        elif which == "progress_request":
            stream.request_progress()

    def _watch_response(self, r: WatchResponse) -> pb.WatchResponse:
        # etcd's cancel of a watch whose revisions were compacted carries header
        # revision 0 (its mvcc response has none); the compact revision says it all.
        revision = 0 if r.canceled and r.compact_revision else r.revision
        return pb.WatchResponse(
            header=self.header(revision),
            watch_id=r.watch_id,
            created=r.created,
            canceled=r.canceled,
            compact_revision=r.compact_revision,
            cancel_reason=r.cancel_reason,
            events=[C.event(e) for e in r.events],
        )


def fragments(resp: pb.WatchResponse, max_bytes: int) -> list[pb.WatchResponse]:
    """etcd's sendFragments (v3rpc/watch.go), for a watch created with `fragment`:
    a response of at least `max_bytes` (the server's request limit plus the gRPC
    overhead, 2 MiB by default, as etcd's MaxRequestBytesWithOverhead) with two events
    or more goes as several, each filled with events until the next would take it
    to the limit (one event at least), `fragment` set on all but the last; every
    part carries the same header, watch id and flags."""
    if resp.ByteSize() < max_bytes or len(resp.events) < 2:
        return [resp]
    out: list[pb.WatchResponse] = []
    events = list(resp.events)
    i = 0
    while i < len(events):
        cur = pb.WatchResponse()
        cur.CopyFrom(resp)
        del cur.events[:]
        cur.fragment = True
        while i < len(events):
            cur.events.append(events[i])
            if len(cur.events) > 1 and cur.ByteSize() >= max_bytes:
                del cur.events[-1]
                break
            i += 1
        if i == len(events):
            cur.fragment = False
        out.append(cur)
    return out
