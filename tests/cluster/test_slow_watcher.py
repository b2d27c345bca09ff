"""A watcher that stops reading: the member buffers a bounded number of events for
it (`--watch-max-buffered-events`; the kvs are the store's own, not copies), then
moves it aside to catch up from history, and cancels it with a reason once it is
`--watch-max-lag-revisions` behind; writes and other watchers go on meanwhile."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from raftkv.client import Client
from support.wait import wait_for

from .harness import LocalCluster

MAX_LAG = 50
BUFFERED = 16


@pytest.fixture
def member(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(
        tmp_path,
        1,
        extra_args=[
            "--watch-max-lag-revisions",
            str(MAX_LAG),
            "--watch-max-buffered-events",
            str(BUFFERED),
        ],
    ) as c:
        yield c


def gauge(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_a_watcher_that_stops_reading_is_cancelled_as_too_slow(member: LocalCluster) -> None:
    m = next(iter(member.members.values()))
    slow = socket.create_connection(("127.0.0.1", m.client_port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b"GET /v1/watch?key=slow/&prefix=true HTTP/1.1\r\nHost: raftkv\r\n\r\n")
    value = b"x" * 100_000
    try:
        with Client([m.url]) as cl, httpx.Client(timeout=10) as h:
            wait_for("the slow watch", lambda: gauge(m.url, "raftkv_watchers") == 1, 10)
            with h.stream(
                "GET", f"{m.url}/v1/watch", params={"key": "slow/0", "heartbeat": 1}
            ) as q:
                lines = q.iter_lines()
                assert json.loads(next(lines))["created"]
                i = 0

                def cancelled() -> bool:
                    # Writes go on (filling the socket buffers, then the watcher's
                    # buffer, then its lag) until the member gives up on the reader.
                    nonlocal i
                    for _ in range(10):
                        cl.put(f"slow/{i % 20}", value)
                        i += 1
                    return gauge(m.url, "raftkv_slow_watchers_cancelled_total") == 1

                wait_for("the slow watcher to be cancelled", cancelled, 120, interval=0)
                # The watcher that reads was never held back.
                got = json.loads(next(line for line in lines if line.strip()))
                assert got["events"][0]["kv"]["key"]
                assert gauge(m.url, "raftkv_watchers") == 1  # only the quick one is left
    finally:
        slow.close()
