"""`Lock` and `Election` (etcd's concurrency recipes) against real members."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from cluster.harness import LocalCluster
from raftkv.client import AsyncClient, Client
from raftkv.concurrency import AsyncElection, Election, Lease, Lock, NotLeader
from support.wait import wait_for

_names = itertools.count()


@pytest.fixture
def c(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster.endpoints()) as client:
        yield client


@pytest.fixture
def name() -> str:
    return f"rc{next(_names)}"


def test_lock_holders_never_overlap(cluster: LocalCluster, name: str) -> None:
    """N threads, each with its own client and session, take the lock in turns; in
    the critical section each does an unguarded read-modify-write of a counter. The
    intervals (one clock: this process's) never overlap, fences grow with them, and
    no increment is lost."""
    threads_n, rounds = 4, 3
    held: list[tuple[int, float, float]] = []
    errors: list[BaseException] = []
    counter = f"{name}-counter"

    def contender() -> None:
        try:
            with Client(cluster.endpoints()) as client:
                for _ in range(rounds):
                    with Lock(client, name, ttl=10) as lock:
                        start = time.monotonic()
                        got = client.get(counter)
                        n = int(got.value) if got is not None else 0
                        client.put(counter, str(n + 1).encode())
                        held.append((lock.revision, start, time.monotonic()))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=contender) for _ in range(threads_n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in workers), "a contender hung"
    assert not errors, errors
    with Client(cluster.endpoints()) as client:
        got = client.get(counter)
        assert got is not None
        assert int(got.value) == threads_n * rounds
        assert client.range(name + "/", prefix=True).count == 0  # every key released
    by_fence = sorted(held)
    assert len({f for f, _, _ in held}) == len(held)
    for (_, _, end), (_, start, _) in itertools.pairwise(by_fence):
        assert end <= start, by_fence
    assert by_fence == sorted(held, key=lambda h: h[1])  # later holder, larger fence


def test_a_waiter_whose_predecessor_leaves_waits_on_behind_the_holder(c: Client, name: str) -> None:
    """Three contenders: the third waits on the second's key (the newest older one);
    when the second leaves it looks again and waits behind the first, and takes the
    lock only once the first releases it."""
    first = Lock(c, name, ttl=10)
    assert first.acquire()
    second = Lease(c, 10)
    c.put(f"{name}/{second.id:x}", b"", lease=second.id)
    third = Lock(c, name, ttl=10)
    done = threading.Event()

    def wait_third() -> None:
        if third.acquire():
            done.set()

    t = threading.Thread(target=wait_third)
    t.start()
    try:
        wait_for(
            "the third key",
            lambda: c.range(name + "/", prefix=True, count_only=True).count == 3,
            20,
        )
        second.close()  # deletes the second key: the third re-checks, still behind
        assert not third.is_owner()
        assert first.is_owner()
        first.release()
        assert done.wait(30)
        assert third.is_owner()
        assert third.revision > first.revision
    finally:
        t.join(timeout=30)
        third.release()
        first.release()


def test_acquire_times_out_and_leaves_no_key(c: Client, name: str) -> None:
    holder = Lock(c, name, ttl=10)
    assert holder.acquire()
    try:
        waiter = Lock(c, name, ttl=10)
        assert waiter.acquire(timeout=0.5) is False
        assert waiter.key is None
        assert c.range(name + "/", prefix=True).count == 1
    finally:
        holder.release()
    assert c.range(name + "/", prefix=True).count == 0


def test_lock_on_a_shared_session_and_fence(c: Client, name: str) -> None:
    with Lease(c, 10) as session:
        lock = Lock(c, name, lease=session)
        assert lock.acquire(timeout=10)
        kv = c.get_kv(lock.key or "")
        assert kv is not None
        assert (kv.create_revision, kv.lease) == (lock.revision, session.id)
        lock.release()
        assert c.lease_time_to_live(session.id).ttl > 0  # a given session stays


def test_election_leader_changes_on_resign(c: Client, name: str) -> None:
    a = Election(c, name, ttl=10)
    b = Election(c, name, ttl=10)
    watcher = Election(c, name)
    observed = watcher.observe()
    try:
        assert a.campaign("alpha", timeout=10)
        first = next(observed)
        assert (first.value, first.key_str) == (b"alpha", a.key)
        a.proclaim("alpha-2")
        assert next(observed).value == b"alpha-2"
        won = threading.Event()

        def campaign_b() -> None:
            if b.campaign("beta"):
                won.set()

        t = threading.Thread(target=campaign_b)
        t.start()
        wait_for(
            "b's key",
            lambda: c.range(name + "/", prefix=True, count_only=True).count == 2,
            20,
        )
        leader = watcher.leader()
        assert leader is not None
        assert leader.value == b"alpha-2"
        a.resign()
        assert next(observed).value == b"beta"
        assert won.wait(30)
        t.join(timeout=30)
        assert b.key is not None
        assert b.revision > 0
        with pytest.raises(NotLeader):
            a.proclaim("usurper")
    finally:
        observed.close()
        a.close()
        b.close()
    assert watcher.leader() is None


def test_async_lock_excludes_tasks_and_cleans_up_on_timeout(
    cluster: LocalCluster, name: str
) -> None:
    from raftkv.client import AsyncClient
    from raftkv.concurrency import AsyncLock

    async def scenario() -> list[int]:
        inside = 0
        fences: list[int] = []
        async with AsyncClient(cluster.endpoints()) as ac:

            async def contender() -> None:
                nonlocal inside
                for _ in range(2):
                    async with AsyncLock(ac, name, ttl=10) as lock:
                        inside += 1
                        assert inside == 1, "two holders at once"
                        fences.append(lock.revision)
                        await ac.put(name + "-x", b"")  # yield to the others meanwhile
                        inside -= 1

            await asyncio.gather(*(contender() for _ in range(3)))
            holder = AsyncLock(ac, name, ttl=10)
            await holder.acquire()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await AsyncLock(ac, name, ttl=10).acquire()
            assert (await ac.range(name + "/", prefix=True)).count == 1  # the holder's only
            await holder.release()
            assert (await ac.range(name + "/", prefix=True)).count == 0
        return fences

    fences = asyncio.run(scenario())
    assert len(fences) == 6
    assert fences == sorted(fences)
    assert len(set(fences)) == 6


def test_async_election_leader_changes_on_resign(cluster: LocalCluster, name: str) -> None:
    async def main() -> None:
        async with AsyncClient(cluster.endpoints()) as ac:
            a = AsyncElection(ac, name, ttl=10)
            b = AsyncElection(ac, name, ttl=10)
            observed = AsyncElection(ac, name).observe()
            try:
                await asyncio.wait_for(a.campaign("alpha"), 10)
                first = await asyncio.wait_for(anext(observed), 10)
                assert (first.value, first.key_str) == (b"alpha", a.key)
                await a.proclaim("alpha-2")
                assert (await asyncio.wait_for(anext(observed), 10)).value == b"alpha-2"
                b_won = asyncio.create_task(b.campaign("beta"))
                for _ in range(200):
                    if (await ac.range(name + "/", prefix=True, count_only=True)).count == 2:
                        break
                    await asyncio.sleep(0.05)
                assert not b_won.done()
                leader = await a.leader()
                assert leader is not None
                assert leader.value == b"alpha-2"
                await a.resign()
                assert (await asyncio.wait_for(anext(observed), 10)).value == b"beta"
                await asyncio.wait_for(b_won, 10)
                assert b.key is not None
                with pytest.raises(NotLeader):
                    await a.proclaim("nope")
            finally:
                await observed.aclose()
                await a.aclose()
                await b.aclose()

    asyncio.run(main())
