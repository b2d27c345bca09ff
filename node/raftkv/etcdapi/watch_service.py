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
from .base import MAX_WATCH_EVENTS_PER_RESPONSE, ServiceBase, requires_leader
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

        async def read() -> None:
            try:
                async for req in requests:
                    self._watch_request(stream, req)
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
                    yield self._watch_response(r)
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

    def _watch_request(self, stream: WatchStream, req: pb.WatchRequest) -> None:
        which = req.WhichOneof("request_union")
        if which == "create_request":
            c = req.create_request
            filters = [Filter(f) for f in c.filters if f in (0, 1)]
            stream.create(
                c.key,
                c.range_end,
                start_revision=max(c.start_revision, 0),
                filters=filters,
                prev_kv=c.prev_kv,
                progress_notify=c.progress_notify,
                watch_id=c.watch_id if c.watch_id > 0 else None,
            )
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
