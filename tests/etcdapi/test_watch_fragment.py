"""Watch fragments side by side with a real etcd 3.5: a watch created with
`fragment=true` gets a response larger than the request limit plus gRPC's overhead
(2 MiB) split into
parts, `fragment` set on all but the last, at the same event boundaries as etcd's;
a watch without it on the same stream gets it whole."""

from __future__ import annotations

from typing import Any

from raftkv.etcdapi.proto import kv_pb2
from raftkv.etcdapi.proto import rpc_pb2 as pb
from raftkv.etcdapi.watch_service import fragments

from .stubs import EtcdStub
from .test_watch_differential import Watcher

VALUE = b"v" * (400 * 1024)


def _shape(resp: dict[str, Any]) -> dict[str, Any]:
    """A response with every value replaced by its length (they are 400 KiB)."""
    out = dict(resp)
    events = []
    for ev in resp.get("events", []):
        ev = dict(ev)
        for part in ("kv", "prev_kv"):
            if part in ev:
                ev[part] = {**ev[part], "value": len(ev[part].get("value", ""))}
        events.append(ev)
    if events:
        out["events"] = events
    return out


def _script(stub: EtcdStub) -> list[dict[str, Any]]:
    for i in range(6):
        stub.call("KV", "Put", pb.PutRequest(key=b"f/%d" % i, value=VALUE))
    w = Watcher(stub)
    try:
        create = pb.WatchCreateRequest(key=b"f/", range_end=b"f0", prev_kv=True)
        frag = pb.WatchCreateRequest()
        frag.CopyFrom(create)
        frag.fragment = True
        frag.watch_id = 1
        create.watch_id = 2
        w.send(pb.WatchRequest(create_request=frag))
        w.send(pb.WatchRequest(create_request=create))
        out = [w.next(), w.next()]
        # one revision, six DELETE events carrying 400 KiB prev_kvs: ~2.4 MB
        stub.call("KV", "DeleteRange", pb.DeleteRangeRequest(key=b"f/", range_end=b"f0"))
        got: list[dict[str, Any]] = []
        while sum(len(r.get("events", [])) for r in got) < 12:
            got.append(w.next())
        # the order between the two watches is not part of the contract
        out += sorted(
            got, key=lambda r: (r.get("watch_id", "0"), r.get("fragment", False) is False)
        )
        return [_shape(r) for r in out]
    finally:
        w.close()


def test_large_responses_are_fragmented_as_etcd_does(
    side_by_side: tuple[EtcdStub, EtcdStub],
) -> None:
    real, ours = side_by_side
    want, got = _script(real), _script(ours)
    parts = [(r.get("watch_id"), r.get("fragment", False), len(r.get("events", []))) for r in got]
    assert parts[2:] == [("1", True, 5), ("1", False, 1), ("2", False, 6)]
    assert got == want


def test_fragments_follow_etcds_rule() -> None:
    ev = kv_pb2.Event(kv=kv_pb2.KeyValue(key=b"k", value=b"x" * 100))
    resp = pb.WatchResponse(watch_id=3, events=[ev] * 10)
    assert fragments(resp, 10_000) == [resp]  # under the limit: whole
    one = pb.WatchResponse(watch_id=3, events=[kv_pb2.Event(kv=kv_pb2.KeyValue(value=b"x" * 500))])
    assert fragments(one, 100) == [one]  # one event is never split
    parts = fragments(resp, 350)
    assert [len(p.events) for p in parts] == [3, 3, 3, 1]
    assert [p.fragment for p in parts] == [True, True, True, False]
    assert all(p.watch_id == 3 for p in parts)
    assert [e for p in parts for e in p.events] == list(resp.events)
