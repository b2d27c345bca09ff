"""Watch through etcd's gRPC API, side by side with a real etcd 3.5: the same
streams and writes give the same responses (created, events with prev_kv and filters,
cancel, compacted start), field by field bar DIFFERENCES."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

from google.protobuf.json_format import MessageToDict

from raftkv.etcdapi.proto import rpc_pb2 as pb

from .stubs import EtcdStub
from .test_differential import _strip

WATCH_DIFFERENCES: dict[str, str] = {
    "progress watch_id": "a RequestProgress answer speaks for the whole stream with "
    "watch_id -1 (etcd 3.5.8+ and clientv3's InvalidWatchID); etcd 3.5.1 answered per "
    "watch, with each watch's id",
}


class Watcher:
    """One Watch stream: requests fed from a queue, responses read in order (the
    call's deadline bounds every wait)."""

    def __init__(self, stub: EtcdStub) -> None:
        self._q: queue.Queue[pb.WatchRequest | None] = queue.Queue()
        self._responses = stub.stream("Watch", "Watch", self._requests(), timeout=30)

    def _requests(self) -> Iterator[pb.WatchRequest]:
        while True:
            r = self._q.get()
            if r is None:
                return
            yield r

    def send(self, r: pb.WatchRequest) -> None:
        self._q.put(r)

    def next(self) -> dict[str, Any]:
        resp = next(self._responses)
        return _strip(MessageToDict(resp, preserving_proto_field_name=True))

    def events_until(self, revision: int) -> list[dict[str, Any]]:
        """Every event (all watches of the stream) up to `revision`."""
        out: list[dict[str, Any]] = []
        while not out or int(out[-1]["kv"]["mod_revision"]) < revision:
            r = self.next()
            out.extend(r.get("events", []))
        return out

    def close(self) -> None:
        self._q.put(None)


def _script(stub: EtcdStub) -> dict[str, Any]:
    """The same calls on either server; what the watches saw."""

    def put(key: bytes, value: bytes) -> None:
        stub.call("KV", "Put", pb.PutRequest(key=key, value=value))

    put(b"w/a", b"1")
    put(b"w/b", b"2")
    put(b"w/a", b"3")
    stub.call("KV", "DeleteRange", pb.DeleteRangeRequest(key=b"w/b"))
    seen: dict[str, Any] = {}
    w = Watcher(stub)
    try:
        # A replay from revision 2 with prev_kv, on the prefix.
        w.send(
            pb.WatchRequest(
                create_request=pb.WatchCreateRequest(
                    key=b"w/", range_end=b"w0", start_revision=2, prev_kv=True, watch_id=7
                )
            )
        )
        seen["created"] = w.next()
        seen["replay"] = w.events_until(5)
        # A second watch on the stream, puts only, from now.
        w.send(
            pb.WatchRequest(
                create_request=pb.WatchCreateRequest(
                    key=b"w/", range_end=b"w0", filters=[pb.WatchCreateRequest.NODELETE]
                )
            )
        )
        seen["created2"] = w.next()
        put(b"w/c", b"4")
        stub.call("KV", "DeleteRange", pb.DeleteRangeRequest(key=b"w/c"))
        seen["live"] = w.events_until(7)
        # Cancel the first; the next put reaches only the second.
        w.send(pb.WatchRequest(cancel_request=pb.WatchCancelRequest(watch_id=7)))
        seen["canceled"] = w.next()
        put(b"w/d", b"5")
        seen["after_cancel"] = w.next()
    finally:
        w.close()
    # A watch from a compacted revision is cancelled with the compact revision.
    stub.call("KV", "Compact", pb.CompactionRequest(revision=6))
    w2 = Watcher(stub)
    try:
        w2.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w/a", start_revision=3)))
        seen["compacted"] = [w2.next(), w2.next()]
    finally:
        w2.close()
    # A progress request: the header revision says "everything up to here was sent".
    w3 = Watcher(stub)
    try:
        w3.send(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w/z")))
        seen["created3"] = w3.next()
        w3.send(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))
        progress = w3.next()
        progress.pop("watch_id", None)  # WATCH_DIFFERENCES["progress watch_id"]
        seen["progress"] = progress
    finally:
        w3.close()
    return seen


def test_watch_streams_answer_as_etcd_does(side_by_side: tuple[EtcdStub, EtcdStub]) -> None:
    real, ours = side_by_side
    want, got = _script(real), _script(ours)
    for part in want:
        assert got[part] == want[part], f"{part}:\netcd:   {want[part]}\nraftkv: {got[part]}"
