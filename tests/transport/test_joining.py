"""A joining learner refuses streams as `not_ready` (503), and senders take that as a
passing state: no ERROR, no warning, and a connection as soon as it knows its id.
A wrong secret is still the ERROR it always was."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from raftkv.server.main import _PeerApp
from raftkv.transport import SNAPSHOT_PATH, STREAM_PATH, PeerAuth, Transport
from raftkv.transport.auth import NOT_READY, PeerRefused, not_ready, refusal_code
from raftkv.transport.transport import peer_uvicorn_config

from .harness import AUTH, FAST, Cluster, _Server, app, bound_socket, eventually

if TYPE_CHECKING:
    from raftkv.server.node import Node

LOGGER = "raftkv.transport"
JOINING_LINE = "does not know its member id yet"
FORBIDDEN_LINE = "refused our cluster id or peer secret (403)"


@dataclass
class JoiningNode:
    """All `_PeerApp` reads of a Node: its transport, None until the id is known."""

    transport: Transport | None = None


@asynccontextmanager
async def serving(asgi: object) -> AsyncIterator[str]:
    """Serve `asgi` as the member serves its peer port (`peer_uvicorn_config`) on a
    real socket; yield its peer URL."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    server = _Server(peer_uvicorn_config(asgi, FAST, port=port))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), "uvicorn start")
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def peer_app(node: JoiningNode) -> _PeerApp:
    return _PeerApp(cast("Node", node))


def loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Everything anyone logged at WARNING or above."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


# -- the learner's side: what a joining member answers --------------------------------------


@pytest.mark.asyncio
async def test_joining_member_refuses_a_stream_with_503_not_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(peer_app(JoiningNode())) as url:
        with pytest.raises(InvalidStatus) as refused:
            await connect(
                url.replace("http://", "ws://") + STREAM_PATH,
                additional_headers=AUTH.headers(1, 2),
                proxy=None,
            )
    response = refused.value.response
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert json.loads(response.body) == not_ready().body()
    assert refusal_code(response.body) == NOT_READY
    # Every learner does this on every join: nothing for an operator to act on.
    assert loud(caplog) == []


@pytest.mark.asyncio
async def test_joining_member_refuses_a_snapshot_with_the_same_body() -> None:
    async with (
        serving(peer_app(JoiningNode())) as url,
        httpx.AsyncClient(trust_env=False) as client,
    ):
        r = await client.post(f"{url}{SNAPSHOT_PATH}", headers=AUTH.headers(1, 2))
    assert r.status_code == 503
    assert r.headers["retry-after"] == "1"
    assert r.json() == not_ready().body()


# -- the sender's side ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sender_waits_quietly_for_a_joining_peer_then_connects(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a = await cluster.add(1)
    b = await cluster.add(2, serve=False)  # served below, through the joining app
    node = JoiningNode()
    async with serving(peer_app(node)) as url:
        a.transport.set_peer(2, url)
        a.transport.send([app(1, 2, 1)])

        def refusals() -> int:
            return sum(JOINING_LINE in r.getMessage() for r in caplog.records)

        await eventually(lambda: refusals() >= 3, "a few not_ready refusals")
        assert 2 in a.unreachable  # still undelivered, as far as Raft is concerned
        node.transport = b.transport  # the learner has learnt its id
        await eventually(lambda: b.transport.incoming_peers() == [1], "a's stream to b")
        a.transport.send([app(1, 2, 2)])
        # What was queued while the learner was joining goes out first.
        await eventually(lambda: [m.index for m in b.received] == [1, 2], "delivery")
        await a.transport.stop()  # before the server goes, or its redial would warn
    assert loud(caplog) == []
    joining = [r for r in caplog.records if JOINING_LINE in r.getMessage()]
    # Once at INFO for the outage, the redials at DEBUG.
    assert [r.levelno for r in joining[:2]] == [logging.INFO, logging.DEBUG]
    assert all(r.levelno == logging.DEBUG for r in joining[1:])


@pytest.mark.asyncio
async def test_not_ready_keeps_the_normal_backoff(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A 403 pushes the next dial to the backoff cap at once; a joining learner must
    be reached soon after it knows its id, so its refusals redial like a dead peer."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    a = await cluster.add(1, options=replace(FAST, backoff_max=5.0))
    async with serving(peer_app(JoiningNode())) as url:
        loop = asyncio.get_running_loop()
        start = loop.time()
        a.transport.set_peer(2, url)
        # 10 ms initial: six dials sleep at most 10+20+40+80+160 ms in between; at the
        # cap the second dial alone would wait at least 2.5 s.
        await eventually(
            lambda: sum(JOINING_LINE in r.getMessage() for r in caplog.records) >= 6,
            "six refusals",
        )
        elapsed = loop.time() - start
        await a.transport.stop()
    assert elapsed < 2.0, elapsed


@pytest.mark.asyncio
async def test_a_stopping_peer_is_not_an_error_either(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    a = await cluster.add(1)
    b = await cluster.add(2)
    a.transport.set_peer(2, b.url)
    await eventually(lambda: b.transport.incoming_peers() == [1], "a's stream")
    await b.transport.inbound.close_all()  # refuses with 503 `stopping` from now on
    await eventually(
        lambda: any("is shutting down" in r.getMessage() for r in caplog.records),
        "a redials into the stopping member",
    )
    assert loud(caplog) == []


@pytest.mark.asyncio
async def test_wrong_secret_is_still_an_error(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    a = await cluster.add(1, auth=PeerAuth(AUTH.cluster_id, "not-the-secret"))
    b = await cluster.add(2)
    a.transport.set_peer(2, b.url)
    await eventually(
        lambda: any(FORBIDDEN_LINE in r.getMessage() for r in caplog.records), "the 403 line"
    )
    line = next(r for r in caplog.records if FORBIDDEN_LINE in r.getMessage())
    assert line.levelno == logging.ERROR
    assert line.name == LOGGER
    assert not any(JOINING_LINE in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_wrong_secret_at_a_joining_member_is_not_ready_not_forbidden() -> None:
    """A member without an id cannot judge a secret either (it has no transport to
    admit with): the caller learns only that it should come back."""
    headers = PeerAuth(AUTH.cluster_id, "not-the-secret").headers(1, 2)
    async with serving(peer_app(JoiningNode())) as url:
        with pytest.raises(InvalidStatus) as refused:
            await connect(
                url.replace("http://", "ws://") + STREAM_PATH,
                additional_headers=headers,
                proxy=None,
            )
    assert refused.value.response.status_code == 503


# -- refusal_code ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"\xff\xfe\x00not utf-8",
        b"{",
        b"[" * 100_000 + b"]" * 100_000,  # deep enough to hit the recursion limit
        b"null",
        b"42",
        b'"not_ready"',
        b'["error", "not_ready"]',
        b'{"message": "member id not known yet"}',
        b'{"error": null}',
        b'{"error": 503}',
        b'{"error": {"code": "not_ready"}}',
    ],
)
def test_refusal_code_without_a_code_is_none(body: bytes) -> None:
    assert refusal_code(body) is None


def test_refusal_code_reads_the_house_error_shape() -> None:
    assert refusal_code(json.dumps(not_ready().body()).encode()) == NOT_READY
    forbidden = PeerRefused(403, "forbidden", "wrong cluster id or peer secret")
    assert refusal_code(bytearray(json.dumps(forbidden.body()).encode())) == "forbidden"
    assert refusal_code(b'{"error": "stopping", "extra": [1, 2]}') == "stopping"
