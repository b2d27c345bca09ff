"""`POST /v3/watch` on the JSON gateway, side by side with a real etcd 3.5's gateway:
the same request streams (sent piece by piece over one chunked request, as a client
that keeps the body open does, and all at once, as `curl -d` does) give the same
`{"result": ...}` lines, field by field bar the header ids; a first request that is
not JSON gets the same 500; the end of the body does not end the stream."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from cluster.harness import LocalCluster
from raftkv.etcdapi import errors as X
from raftkv.etcdapi.gateway_watch import DecodeError, JsonStream, error_line, watch_request
from support.wait import wait_for

from .test_differential import _strip
from .test_watch_differential import WATCH_DIFFERENCES


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class WatchConn:
    """One `POST /v3/watch` over a raw socket with a chunked request body, so that
    requests can be sent while responses are read (an HTTP client library sends
    the whole body first). Every read is bounded by the socket timeout."""

    def __init__(self, base: str) -> None:
        u = urlsplit(base)
        assert u.hostname is not None
        assert u.port is not None
        self.sock = socket.create_connection((u.hostname, u.port), timeout=15)
        self.sock.sendall(
            b"POST /v3/watch HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" % u.netloc.encode()
        )
        self.raw = b""
        self.data = b""
        self.status = 0

    def send(self, obj: Any) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def close_body(self) -> None:
        self.sock.sendall(b"0\r\n\r\n")

    def _fill(self) -> None:
        got = self.sock.recv(65536)
        assert got, "the server closed the stream"
        self.raw += got

    def _headers(self) -> None:
        while b"\r\n\r\n" not in self.raw:
            self._fill()
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ", 2)[1])
        assert b"transfer-encoding: chunked" in head.lower(), head

    def line(self) -> dict[str, Any]:
        """The next newline-terminated JSON object of the response."""
        if not self.status:
            self._headers()
        while b"\n" not in self.data:
            while b"\r\n" not in self.raw:
                self._fill()
            size_line, rest = self.raw.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            assert size > 0, "the response ended"
            while len(rest) < size + 2:
                self._fill()
                rest = self.raw.split(b"\r\n", 1)[1]
            self.data += rest[:size]
            self.raw = rest[size + 2 :]
        text, self.data = self.data.split(b"\n", 1)
        out: dict[str, Any] = json.loads(text)
        return _strip(out)

    def close(self) -> None:
        self.sock.close()


def _call(base: str, path: str, body: dict[str, Any]) -> Any:
    r = httpx.post(base + path, json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _watch(base: str, requests: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The first `n` lines of a watch whose whole body is `requests` (curl -d)."""
    body = "\n".join(json.dumps(r) for r in requests)
    with httpx.stream("POST", base + "/v3/watch", content=body, timeout=15) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        return [_strip(json.loads(next(lines))) for _ in range(n)]


def _by_watch(lines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Lines per watch id, in order: the order between two watches' responses is not
    part of the contract (etcd sends a replay from its sync loop, later)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        out.setdefault(line["result"].get("watch_id", "0"), []).append(line)
    return out


def _script(base: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    put = {"key": b64("gw/k"), "value": b64("1")}
    body = json.dumps({"create_request": {"key": b64("gw/k"), "prev_kv": True}})
    # the body ends with the create (a half-close): the stream goes on
    with httpx.stream("POST", base + "/v3/watch", content=body, timeout=15) as r:
        out["status"] = (r.status_code, r.headers["content-type"])
        lines = r.iter_lines()
        out["created"] = _strip(json.loads(next(lines)))
        _call(base, "/v3/kv/put", put)
        _call(base, "/v3/kv/put", {**put, "value": b64("2")})
        _call(base, "/v3/kv/deleterange", {"key": b64("gw/k")})
        out["events"] = [_strip(json.loads(next(lines))) for _ in range(3)]

    # two watches on one stream, one replaying from revision 2, ids given, an unknown
    # field (ignored, as by grpc-gateway's decoder), a progress request
    create = {"key": b64("gw/"), "range_end": b64("gw0"), "start_revision": "2"}
    two = _watch(
        base,
        [
            {"create_request": {**create, "watch_id": "7"}},
            {"create_request": {"key": b64("gw/x"), "watch_id": "3"}, "unknown_field": 1},
            {"progress_request": {}},
        ],
        4,
    )
    for line in two:
        if set(line["result"]) == {"header", "watch_id"}:  # the progress answer
            line["result"].pop("watch_id")  # WATCH_DIFFERENCES["progress watch_id"]
            line["result"]["watch_id"] = "progress"
    out["two watches"] = _by_watch(two)

    # a compacted start revision: created, then cancelled with the compact revision
    now = _call(base, "/v3/kv/range", {"key": b64("gw/k")})["header"]["revision"]
    _call(base, "/v3/kv/compaction", {"revision": now})
    out["compacted"] = _watch(
        base, [{"create_request": {"key": b64("gw/k"), "start_revision": "2"}}], 2
    )

    # a first request that is not JSON: grpc-gateway's 500, before any stream
    r = httpx.post(base + "/v3/watch", content=b'{"create_request": {"key":', timeout=10)
    out["truncated"] = (r.status_code, r.json())
    return out


def test_requests_are_read_as_they_arrive(tmp_path: Path) -> None:
    """raftkv reads the body request by request while it answers, so one request
    can watch, cancel and ask for progress interactively (etcd's gateway answers
    only once the body is complete; docs/etcd.md)."""
    c = LocalCluster(tmp_path, 1, etcd=True)
    try:
        c.start_all()
        c.leader()
        base = c.members["m1"].url
        w = WatchConn(base)
        try:
            w.send({"create_request": {"key": b64("i/k"), "watch_id": "5"}})
            assert w.line()["result"]["created"] is True
            assert w.status == 200
            put = _call(base, "/v3/kv/put", {"key": b64("i/k"), "value": b64("v")})
            ev = w.line()["result"]
            assert ev["watch_id"] == "5"
            assert ev["events"][0]["kv"]["value"] == b64("v")
            assert ev["header"]["revision"] == put["header"]["revision"]
            w.send({"create_request": {"key": b64("i/other"), "watch_id": "6"}})
            assert w.line()["result"] == {**w_header(base), "watch_id": "6", "created": True}
            w.send({"cancel_request": {"watch_id": "6"}})
            assert w.line()["result"]["canceled"] is True
            w.send({"progress_request": {}})
            assert set(w.line()["result"]) == {"header", "watch_id"}
            w.send("not a request")  # a later bad request ends the reading only
            _call(base, "/v3/kv/put", {"key": b64("i/k"), "value": b64("w")})
            assert w.line()["result"]["events"][0]["kv"]["value"] == b64("w")
        finally:
            w.close()
        # the member let go of the stream when the client went away
        with httpx.Client(base_url=base) as h:
            wait_for(
                "the watch stream closed",
                lambda: "raftkv_watch_streams 0.0" in h.get("/metrics").text,
                10,
            )
        # and an open stream does not hold up a graceful stop
        w = WatchConn(base)
        try:
            w.send({"create_request": {"key": b64("i/k")}})
            assert w.line()["result"]["created"] is True
            assert c.stop("m1") == 0
        finally:
            w.close()
    finally:
        c.close()


def w_header(base: str) -> dict[str, Any]:
    """The stripped header a response at the current revision carries."""
    got = _call(base, "/v3/kv/range", {"key": b64("none")})
    return {"header": _strip(got)["header"]}


def test_gateway_watch_streams_as_etcd_does(etcd: str, tmp_path: Path) -> None:
    assert "progress watch_id" in WATCH_DIFFERENCES
    (tmp_path / "raftkv").mkdir()
    c = LocalCluster(tmp_path / "raftkv", 1, etcd=True)
    try:
        c.start_all()
        c.leader()
        want = _script(f"http://{etcd}")
        got = _script(c.members["m1"].url)
    finally:
        c.close()
    assert got.keys() == want.keys()
    for part in want:
        assert got[part] == want[part], f"{part}:\netcd:   {want[part]}\nraftkv: {got[part]}"


def test_the_body_is_split_into_requests_wherever_its_chunks_end() -> None:
    """`JsonStream` (no member): values cut anywhere (inside a literal, a string, a
    multi-byte character) wait for the rest; only the end of the body makes a value
    cut short an error, worded as Go's decoder words it."""
    text = '{"create_request": {"key": "Zm9v", "prev_kv": true}}\n{"k": "é"} {"a": 1}'
    data = text.encode()
    for cut in range(1, len(data)):
        js = JsonStream(1 << 20)
        got = js.feed(data[:cut], final=False) + js.feed(data[cut:], final=True)
        assert got == [
            {"create_request": {"key": "Zm9v", "prev_kv": True}},
            {"k": "é"},
            {"a": 1},
        ], cut
    js = JsonStream(1 << 20)
    assert js.feed(b'{"create_request": {"key":', final=False) == []
    with pytest.raises(DecodeError, match="unexpected EOF"):
        js.feed(b"", final=True)
    with pytest.raises(DecodeError, match="Expecting value"):
        JsonStream(1 << 20).feed(b'{"a": nope}', final=True)
    with pytest.raises(DecodeError, match="too large"):
        JsonStream(10).feed(b'{"key": "' + b"x" * 20, final=False)
    assert watch_request({"create_request": {"key": "Zm9v"}, "x": 1}).create_request.key == b"foo"
    with pytest.raises(DecodeError):
        watch_request([1])
    with pytest.raises(DecodeError):
        watch_request({"create_request": {"key": 5}})


def test_stream_errors_are_grpc_gateways() -> None:
    line = json.loads(error_line(X.NO_LEADER))
    assert line == {
        "error": {
            "grpc_code": 14,
            "http_code": 503,
            "message": "etcdserver: no leader",
            "http_status": "Service Unavailable",
        }
    }
