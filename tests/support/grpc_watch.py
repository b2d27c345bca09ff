"""Watchers through etcd's v3 gRPC Watch stream that survive member loss, checked by
`support.watch_check.check_watcher` like the native API's watchers.

A `GrpcWatcher` is a `Watcher` (same record of events, same fields the checker reads)
whose stream is a gRPC Watch on a member's etcd port, run as a coroutine (`arun`) on
the caller's event loop, next to the gRPC workload: grpc.aio wants one loop.

How it stays honest about what it has seen. A Watch response's header revision is not
a promise that every earlier event was sent (a watcher catching up gets old events
under a newer header), so the resume point is the last event's revision + 1, or a
*progress* response's revision + 1: etcd's RequestProgress is answered only once every
watch of the stream is synced, so its revision is complete. The watcher asks for
progress every `progress_every` seconds; that also proves the member is alive. A stream
that answers nothing for `stall` seconds (a paused member, a cut link) or ends (a
killed member; with `hasleader`, a member without a leader) is abandoned, and the
watcher watches again on the next member from its resume point, as a client should.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import grpc

from raftkv.etcdapi.proto import kv_pb2
from raftkv.etcdapi.proto import rpc_pb2 as pb
from support.etcd_aio import AioEtcd, prefix_end
from support.grpc_workload import channel
from support.watch_check import Watcher

__all__ = ["GrpcWatcher", "run_watchers"]


@dataclass
class GrpcWatcher(Watcher):
    """`endpoints` are etcd gRPC `host:port`s; the first is where it starts."""

    require_leader: bool = True
    """Send `hasleader=true` (clientv3's WithRequireLeader, as etcdctl and the
    apiserver do): a member that loses its leader ends the stream."""
    progress_every: float = 0.5
    stall: float = 2.0
    resume: int = 0
    """The revision the next stream starts from: everything before it was received."""

    def close(self, timeout: float = 10.0) -> None:
        """Ask `arun` to return (it notices within `stall` seconds)."""
        self.stop.set()

    async def arun(self) -> None:
        i = 0
        self.resume = max(self.resume, self.start)
        while not self.stop.is_set():
            ch = channel(self.endpoints[i % len(self.endpoints)])
            try:
                await self._stream(ch)
            except (TimeoutError, grpc.aio.AioRpcError):
                pass
            except AssertionError as exc:
                self.error = str(exc)
                return
            finally:
                await ch.close()
            if self.stop.is_set():
                return
            i += 1
            self.reconnects += 1
            await asyncio.sleep(0.05)

    async def _stream(self, ch: AioEtcd) -> None:
        """One Watch stream from `self.resume`, until it breaks, stalls or we stop."""
        p = self.prefix.encode()
        call = ch.watch((("hasleader", "true"),) if self.require_leader else ())
        progress: asyncio.Task[None] | None = None
        try:
            await call.write(
                pb.WatchRequest(
                    create_request=pb.WatchCreateRequest(
                        key=p, range_end=prefix_end(p), start_revision=self.resume
                    )
                )
            )
            progress = asyncio.create_task(self._ask_progress(call))
            while not self.stop.is_set():
                msg = await asyncio.wait_for(call.read(), self.stall)
                if msg is grpc.aio.EOF:
                    return
                self._take_response(msg)
        finally:
            if progress is not None:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await progress
            call.cancel()

    async def _ask_progress(self, call: object) -> None:
        while True:
            await asyncio.sleep(self.progress_every)
            await call.write(  # type: ignore[attr-defined]
                pb.WatchRequest(progress_request=pb.WatchProgressRequest())
            )

    def _take_response(self, msg: pb.WatchResponse) -> None:
        """Record a response's events and move the resume point past what is complete."""
        assert not msg.canceled, (
            f"watch cancelled: compact_revision={msg.compact_revision} reason={msg.cancel_reason!r}"
        )
        if msg.created:
            return
        if not msg.events:  # a progress notification: complete up to its revision
            self.seen_rev = max(self.seen_rev, msg.header.revision)
            self.resume = max(self.resume, msg.header.revision + 1)
            return
        for ev in msg.events:
            kv = ev.kv
            typ = "PUT" if ev.type == kv_pb2.Event.PUT else "DELETE"
            self.events.append((kv.mod_revision, typ, kv.key.decode(), kv.value.decode()))
            self.seen_rev = max(self.seen_rev, kv.mod_revision)
            self.resume = max(self.resume, kv.mod_revision + 1)


def run_watchers(watchers: list[GrpcWatcher]) -> list[asyncio.Task[None]]:
    """Start each watcher's `arun` on the running loop."""
    return [asyncio.create_task(w.arun(), name=f"grpc-watcher-{i}") for i, w in enumerate(watchers)]
