"""Watch and leases through member loss (SIGKILL), on clusters of their own:

- a watch survives the death of the member serving it, and its consumer sees every
  revision exactly once, in order (no gap, no duplicate across the reconnect);
- a lease kept alive by a `Lease` keeps its keys through a leader kill, for several
  TTLs; a lease nobody renews loses its keys within TTL plus a stated bound.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from cluster.harness import LocalCluster
from raftkv.client import AsyncClient, Client, Compacted
from raftkv.client_watch import WatchEvent
from raftkv.concurrency import Lease
from support.wait import wait_for

EXPIRY_BOUND = 4.0
"""Seconds past its TTL by which an unrenewed lease's keys are gone: the leader checks
expiry every tick and proposes the revoke through Raft (an election timeout or two on
this cluster's 50 ms ticks), with room for a loaded 2-core machine."""


def _follower(c: LocalCluster) -> str:
    leader = c.leader()
    return next(name for name in c.members if name != leader.name)


def _writer(c: LocalCluster, but: str) -> Client:
    """A client of every member except `but`, patient through an election."""
    eps = [m.url for name, m in c.members.items() if name != but]
    return Client(eps, retries=20, backoff=0.1, max_backoff=0.5)


@pytest.mark.parametrize("role", ["follower", "leader"])
def test_watch_resumes_on_another_member_without_gap_or_duplicate(
    fresh_cluster: LocalCluster, role: str
) -> None:
    c = fresh_cluster
    victim = _follower(c) if role == "follower" else c.leader().name
    others = [m.url for name, m in c.members.items() if name != victim]
    n = 40
    with (
        _writer(c, victim) as writer,
        Client([c.members[victim].url, *others]) as reader,
        reader.watch("wf/", prefix=True, heartbeat=0.5, retry_timeout=30) as w,
    ):
        assert w.endpoint == c.members[victim].url
        written = [writer.put(f"wf/{i}", str(i).encode()).revision for i in range(n // 2)]
        seen: list[WatchEvent] = []
        while len(seen) < n // 2:
            ev = w.get(timeout=20)
            assert ev is not None, f"watch stalled after {len(seen)} events"
            seen.append(ev)
        c.kill(victim, signal.SIGKILL)
        written += [writer.put(f"wf/{i}", str(i).encode()).revision for i in range(n // 2, n)]
        end = writer.put("wf/end", b"").revision
        while not seen or seen[-1].revision != end:
            ev = w.get(timeout=30)
            assert ev is not None, f"watch stalled after {len(seen)} events"
            seen.append(ev)
        assert w.reconnects >= 1
        assert w.endpoint != c.members[victim].url
    revisions = [e.revision for e in seen]
    assert revisions == [*written, end]  # every write once, in order
    assert revisions == list(range(revisions[0], end + 1))  # and nothing between
    assert [e.kv.value for e in seen[:-1]] == [str(i).encode() for i in range(n)]


def test_watch_that_cannot_resume_past_a_compaction_raises_compacted(
    fresh_cluster: LocalCluster,
) -> None:
    """The member dies; meanwhile the revisions the watch still needs are compacted:
    resuming elsewhere is impossible, and the caller is told from where it could."""
    c = fresh_cluster
    victim = _follower(c)
    others = [m.url for name, m in c.members.items() if name != victim]
    with (
        _writer(c, victim) as writer,
        Client([c.members[victim].url, *others]) as reader,
        reader.watch("wc/", prefix=True, retry_timeout=30) as w,
    ):
        first = writer.put("wc/0", b"").revision
        ev = w.get(timeout=20)
        assert ev is not None
        assert ev.revision == first
        c.kill(victim, signal.SIGKILL)
        last = [writer.put(f"wc/{i}", b"").revision for i in range(1, 4)][-1]
        writer.compact(last)
        with pytest.raises(Compacted) as exc:
            w.get(timeout=30)
    assert exc.value.compact_revision == last
    assert exc.value.status == 410


def test_async_watch_resumes_after_its_member_dies(fresh_cluster: LocalCluster) -> None:
    c = fresh_cluster
    victim = _follower(c)
    others = [m.url for name, m in c.members.items() if name != victim]

    async def scenario() -> list[int]:
        async with (
            AsyncClient([c.members[victim].url, *others]) as reader,
            reader.watch("aw/", prefix=True, heartbeat=0.5, retry_timeout=30) as w,
        ):
            with _writer(c, victim) as writer:
                first = writer.put("aw/0", b"").revision
                ev = await w.get(timeout=20)
                assert ev is not None
                assert ev.revision == first
                c.kill(victim, signal.SIGKILL)
                later = [writer.put(f"aw/{i}", b"").revision for i in range(1, 6)]
            got = [first]
            while len(got) < 6:
                ev = await w.get(timeout=30)
                assert ev is not None, f"stalled after {got}"
                got.append(ev.revision)
            assert got == [first, *later]
            assert w.reconnects >= 1
            return got

    asyncio.run(scenario())


def test_kept_alive_lease_keeps_its_keys_through_a_leader_kill(
    fresh_cluster: LocalCluster,
) -> None:
    c = fresh_cluster
    leader = c.leader()
    with Client(c.endpoints(), retries=20, max_backoff=0.5) as client:
        with Lease(client, 3) as lease:
            client.put("lk/key", b"held", lease=lease.id)
            c.kill(leader.name, signal.SIGKILL)
            c.leader()
            after_kill = lease.renewals

            def still_there_after_a_few_ttls() -> bool:
                kv = client.get_kv("lk/key")
                assert kv is not None, "the key is gone"
                assert kv.lease == lease.id
                assert not lease.lost.is_set()
                # renewals come every TTL/3: six of them span two TTLs
                return lease.renewals >= after_kill + 6

            wait_for("six renewals after the leader kill", still_there_after_a_few_ttls, 60)
            assert client.lease_time_to_live(lease.id).ttl > 0
        assert client.get_kv("lk/key") is None  # revoked on close


def test_unrenewed_lease_loses_its_keys_within_ttl_plus_a_bound(
    fresh_cluster: LocalCluster,
) -> None:
    with Client(fresh_cluster.endpoints()) as client:
        g = client.lease_grant(2)
        granted_at = time.monotonic()
        rev = client.put("lx/key", b"v", lease=g.id).revision
        with client.watch("lx/key", start_revision=rev + 1) as w:
            ev = w.get(timeout=g.ttl + EXPIRY_BOUND - (time.monotonic() - granted_at))
        assert ev is not None, f"the key outlived TTL {g.ttl}s + {EXPIRY_BOUND}s"
        assert ev.type == "DELETE"
        assert client.lease_time_to_live(g.id).ttl == -1
        assert g.id not in client.leases()


def test_lease_reports_lost_when_it_expired_unrenewed(fresh_cluster: LocalCluster) -> None:
    """A `Lease` whose keep-alives are stopped (as if its process froze) learns at the
    next renewal that it is gone, and says so."""
    with Client(fresh_cluster.endpoints()) as client:
        lease = Lease(client, 2, keepalive=False)
        lost: list[int] = []
        lease.on_lost(lambda lz: lost.append(lz.id))
        wait_for("the lease to expire", lambda: client.lease_time_to_live(lease.id).ttl < 0, 30)
        with pytest.raises(Exception, match="lease_not_found"):
            lease.keepalive_once()
        assert lease.lost.is_set()
        assert lost == [lease.id]
        lease.close()  # revoking a gone lease is not an error
