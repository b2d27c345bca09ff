"""Many watches on one WebSocket (`/v1/watch/ws`), as etcd's Watch stream: create with
options, events per watch id, progress on request, cancel, compacted starts, and
malformed messages answered without closing the socket."""

from __future__ import annotations

import base64
import json
from typing import Any

from websockets.sync.client import ClientConnection, connect

from raftkv.client import Client

from .harness import LocalCluster


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def recv(ws: ClientConnection) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return msg


def until(ws: ClientConnection, pred: Any) -> dict[str, Any]:
    for _ in range(50):
        m = recv(ws)
        if pred(m):
            return m
    raise AssertionError("no such message")


def test_many_watches_on_one_socket(cluster: LocalCluster) -> None:
    m = next(iter(cluster.members.values()))
    url = m.url.replace("http://", "ws://") + "/v1/watch/ws"
    with Client(cluster.endpoints()) as cl, connect(url) as ws:
        start = cl.put("ws/a", b"0").revision
        ws.send(json.dumps({"create_request": {"key": b64("ws/a"), "watch_id": 7}}))
        created = recv(ws)
        assert created["created"] is True
        assert created["watch_id"] == 7
        ws.send(
            json.dumps(
                {
                    "create_request": {
                        "key": b64("ws/"),
                        "range_end": b64("ws0"),
                        "start_revision": start,
                        "prev_kv": True,
                        "filters": ["NODELETE"],
                    }
                }
            )
        )
        second = recv(ws)
        assert second["created"] is True
        wid = second["watch_id"]
        assert wid != 7
        replay = until(ws, lambda x: x.get("watch_id") == wid and x.get("events"))
        assert replay["events"][0]["kv"]["mod_revision"] == start
        rev = cl.put("ws/a", b"1").revision
        cl.delete("ws/a")
        seen = {7: [], wid: []}  # type: dict[int, list[tuple[str, int]]]
        while len(seen[7]) < 2 or not seen[wid]:
            msg = recv(ws)
            for ev in msg.get("events", ()):
                seen[msg["watch_id"]].append((ev["type"], ev["kv"]["mod_revision"]))
        assert seen[7] == [("PUT", rev), ("DELETE", rev + 1)]
        assert seen[wid] == [("PUT", rev)]  # deletes filtered out
        ws.send(json.dumps({"progress_request": {}}))
        progress = until(ws, lambda x: x.get("progress_notify"))
        assert progress["header"]["revision"] >= rev + 1
        ws.send(json.dumps({"cancel_request": {"watch_id": 7}}))
        cancelled = until(ws, lambda x: x.get("canceled"))
        assert cancelled["watch_id"] == 7
        for bad in ("nope", "{}", '{"create_request": {"key": ""}}', '{"zap": {}}', "[1]"):
            ws.send(bad)
            assert recv(ws)["error"] == "invalid_request"
        cl.put("ws/b", b"still served")
        after = until(ws, lambda x: x.get("events"))
        assert after["watch_id"] == wid


def test_a_watch_from_a_compacted_revision_is_cancelled_with_the_compact_revision(
    cluster: LocalCluster,
) -> None:
    m = next(iter(cluster.members.values()))
    url = m.url.replace("http://", "ws://") + "/v1/watch/ws"
    with Client(cluster.endpoints()) as cl, connect(url) as ws:
        old = cl.put("wsc/k", b"1").revision
        now = cl.put("wsc/k", b"2").revision
        cl.compact(now)
        ws.send(json.dumps({"create_request": {"key": b64("wsc/k"), "start_revision": old}}))
        assert recv(ws)["created"] is True
        c = until(ws, lambda x: x.get("canceled"))
        assert c["compact_revision"] == now
