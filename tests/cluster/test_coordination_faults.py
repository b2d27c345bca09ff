"""Watches and leases of a real three-member cluster while members are killed:

- watchers on every member, reconnecting to another member from the last revision
  they saw + 1, see every committed change exactly once, in revision order, and
  their view replays to the final state;
- a lease kept alive by a client never loses its keys through leader kills, and one
  left alone ends within its TTL plus a stated bound.
"""

from __future__ import annotations

import base64
import signal
import threading
import time
from pathlib import Path

import httpx

from raftkv.client import Client
from support.wait import wait_for
from support.watch_check import Watcher, check_watcher

from .harness import LocalCluster

TICK_MS = 50
ELECTION_S = 10 * TICK_MS / 1000


def test_watchers_see_every_change_once_in_order_across_member_kills(
    fresh_cluster: LocalCluster,
) -> None:
    c = fresh_cluster
    c.start_all()
    c.leader()
    with Client(c.endpoints(), timeout=10) as cl:
        start = cl.put("w/start", b"0").revision + 1
    urls = [m.url for m in c.members.values()]
    watchers = [Watcher(urls[i:] + urls[:i], start, "w/") for i in range(3) for _ in range(2)]
    for w in watchers:
        w.start_thread()
    acked: dict[str, str] = {}
    writes: list[tuple[str, str]] = []
    try:
        with Client(c.endpoints(), timeout=10) as cl:
            for round_ in range(3):
                for i in range(40):
                    key, value = f"w/k{i % 13}", f"{round_}-{i}"
                    cl.put(key, value.encode())
                    acked[key] = value
                    writes.append((key, value))
                    if i == 20:
                        leader = c.leader()
                        c.kill(leader.name, signal.SIGKILL)
                    if i == 30:
                        cl.delete(f"w/k{round_}")
                        acked.pop(f"w/k{round_}", None)
                for m in c.members.values():
                    if not m.alive():
                        c.start(m.name)
                c.wait_ready()
            listing = httpx.get(
                f"{c.leader().url}/v1/kv", params={"prefix": "w/k", "limit": 1000}
            ).json()
        last = int(listing["revision"])
        for w in watchers:

            def caught_up(w: Watcher = w) -> bool:
                return w.seen_rev >= last or bool(w.error)

            wait_for(f"watcher reached {last}", caught_up, 30)
    finally:
        for w in watchers:
            w.close()
    final = {i["key"]: base64.b64decode(i["value"]).decode() for i in listing["items"]}
    assert final == acked
    for w in watchers:
        assert check_watcher(w, final, writes) == []
        assert w.events, "the watcher saw nothing"


def _keepalive(url_list: list[str], lease: int, stop: threading.Event, fails: list[str]) -> None:
    i = 0
    while not stop.is_set():
        url = url_list[i % len(url_list)]
        try:
            r = httpx.post(f"{url}/v1/leases/{lease}/keepalive", timeout=1.0)
            if r.status_code == 404:
                fails.append(r.text)
                return
            if r.status_code != 200:
                i += 1
        except httpx.HTTPError:
            i += 1
        stop.wait(0.3)


def test_a_kept_alive_lease_keeps_its_keys_through_leader_kills_and_ends_when_left_alone(
    fresh_cluster: LocalCluster,
) -> None:
    c = fresh_cluster
    c.start_all()
    c.leader()
    ttl = 2
    with httpx.Client(base_url=c.leader().url, timeout=5) as h:
        lease = h.post("/v1/leases", json={"ttl": ttl}).json()["id"]
        assert h.put(f"/v1/kv/session?lease={lease}", content=b"alive").status_code == 200
    stop = threading.Event()
    fails: list[str] = []
    t = threading.Thread(
        target=_keepalive, args=([m.url for m in c.members.values()], lease, stop, fails)
    )
    t.start()
    try:
        for _ in range(2):
            leader = c.leader()
            c.kill(leader.name, signal.SIGKILL)
            c.leader()
            deadline = time.monotonic() + 2 * ttl
            while time.monotonic() < deadline:  # longer than the TTL, still kept alive
                assert not fails, fails
                stop.wait(0.2)
            c.start(leader.name)
            c.wait_ready()
        assert not fails, fails
        with httpx.Client(base_url=c.leader().url, timeout=5) as h:
            assert h.get("/v1/kv/session").content == b"alive"
    finally:
        stop.set()
        t.join(10)
    left_alone = time.monotonic()
    bound = ttl + 2 * ELECTION_S + 1.0

    def gone() -> bool:
        return httpx.get(f"{c.leader().url}/v1/kv/session", timeout=2).status_code == 404

    wait_for("the lease's key to go", gone, bound + 10, ignore=httpx.HTTPError)
    took = time.monotonic() - left_alone
    assert took <= bound + 1.0, f"lease ended {took:.1f}s after its last keep-alive"


def test_auto_compaction_compacts_on_the_leader_and_every_member_follows(
    tmp_path: Path,
) -> None:
    c = LocalCluster(
        tmp_path,
        3,
        extra_args=["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"],
    )
    try:
        c.start_all()
        c.leader()
        with Client(c.endpoints(), timeout=10) as cl:
            first = cl.put("ac/k", b"1").revision
            for i in range(20):
                cl.put("ac/k", str(i).encode())

            def compacted() -> bool:
                cl.put("ac/tick", b"x")  # keep the revision moving
                return all(
                    httpx.get(
                        f"{m.url}/v1/kv/ac/k",
                        params={"revision": first, "consistency": "serializable"},
                        timeout=2,
                    ).status_code
                    == 410
                    for m in c.members.values()
                )

            wait_for("every member to have compacted the first write away", compacted, 30)
            assert cl.get("ac/k") is not None
    finally:
        c.close()
