"""A refused upload is answered, whatever the client: the member's own uvicorn server
(the production settings of `raftkv serve`) in front of an in-process member, and
urllib, which sends its whole body at once and only then reads the answer (with
`Connection: close`); before the fix it saw ECONNRESET instead of the 413."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from starlette.types import Message

from raftkv.api.body import Upload
from raftkv.server.main import _bind, _server

from .harness import InProcessMember, start_cluster, stop_cluster

pytestmark = pytest.mark.asyncio

MiB = 1 << 20


@pytest_asyncio.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    c = await start_cluster(tmp_path, monkeypatch, 1)
    member: InProcessMember = await c.leader()
    sock = _bind("127.0.0.1", 0)
    server = _server(member.app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        # uvicorn has a flag for it, no event to wait on
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        await stop_cluster(c)


def _urllib_put(url: str, data: bytes | Iterator[bytes]) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=data, method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"x" * size


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/kv/big", b"x" * (4 * MiB)),  # Content-Length over the limit
        ("/v1/kv/big", _chunks(4 * MiB)),  # chunked: refused while reading
        ("/v1/kv/" + "k" * 5000, b"x" * (256 * 1024)),  # refused before the body
    ],
    ids=["content-length", "chunked", "bad-key"],
)
async def test_urllib_sees_the_413_not_a_reset(
    served: str, path: str, body: bytes | Iterator[bytes]
) -> None:
    status, err = await asyncio.to_thread(_urllib_put, served + path, body)
    assert status == 413
    assert set(err) == {"error", "message"}
    assert err["error"] in ("value_too_large", "key_too_large")
    status, ok = await asyncio.to_thread(_urllib_put, served + "/v1/kv/after", b"small")
    assert status == 200
    assert "revision" in ok


def _keep_alive_then_reuse(base: str) -> tuple[int, bytes, int]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("PUT", "/v1/kv/big", body=b"x" * (4 * MiB))
        first = conn.getresponse()
        first_body = first.read()
        conn.request("PUT", "/v1/kv/small", body=b"y")  # the same connection
        second = conn.getresponse()
        second.read()
        return first.status, first_body, second.status
    finally:
        conn.close()


async def test_keep_alive_connection_survives_a_refused_upload(served: str) -> None:
    first, body, second = await asyncio.to_thread(_keep_alive_then_reuse, served)
    assert first == 413
    assert json.loads(body)["error"] == "value_too_large"
    assert second == 200


def _expect_continue(base: str) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            b"PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % (4 * MiB)
        )
        answer = b""
        while b"value_too_large" not in answer:  # no body sent: the answer comes anyway
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


async def test_expect_continue_is_answered_without_the_body(served: str) -> None:
    head = await asyncio.to_thread(_expect_continue, served)
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"value_too_large" in head


async def test_discard_stops_at_its_bound() -> None:
    sent = 0

    async def receive() -> Message:
        nonlocal sent
        sent += 1000
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    upload = Upload(receive)
    await upload.discard(limit=10_000, timeout=5)
    assert 10_000 < sent <= 11_000
    assert not upload.done


async def test_discard_stops_at_its_deadline() -> None:
    async def receive() -> Message:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    upload = Upload(receive)
    await upload.discard(limit=10_000, timeout=0.05)
    assert not upload.done
