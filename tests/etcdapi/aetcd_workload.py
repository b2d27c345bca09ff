"""A small workload of aetcd (a Python etcd v3 client from PyPI), written against
etcd's API with no knowledge of raftkv: KV, txn, watch, leases, a lock, status and
members. Run by test_client_library.py in its own process (aetcd registers etcd's
protobuf messages under the same names as raftkv's, in one process they would
clash): `python aetcd_workload.py HOST PORT`; prints "workload ok" when every check
held, and exits non-zero otherwise."""

from __future__ import annotations

import asyncio
import sys

import aetcd  # type: ignore[import-untyped, import-not-found, unused-ignore]


async def workload(host: str, port: int) -> None:
    async with aetcd.Client(host=host, port=port, timeout=10) as c:
        await c.put(b"lib/a", b"1")
        await c.put(b"lib/b", b"2")
        got = await c.get(b"lib/a")
        assert got is not None
        assert got.value == b"1", got
        assert await c.get(b"lib/missing") is None
        rng = await c.get_prefix(b"lib/")
        assert [kv.key for kv in rng] == [b"lib/a", b"lib/b"], rng
        t = c.transactions
        ok, _ = await c.transaction(
            compare=[t.value(b"lib/a") == b"1"],
            success=[t.put(b"lib/a", b"1b")],
            failure=[t.put(b"lib/a", b"no")],
        )
        assert ok
        ok, _ = await c.transaction(
            compare=[t.version(b"lib/a") == 99], success=[], failure=[t.get(b"lib/a")]
        )
        assert not ok
        start = (await c.get(b"lib/a")).header.revision

        watch = await c.watch(b"lib/w", start_revision=start)
        await c.put(b"lib/w", b"x")
        await c.delete(b"lib/w")
        kinds = []
        async for ev in watch:
            kinds.append((str(ev.kind), ev.kv.key))
            if len(kinds) == 2:
                break
        await watch.cancel()
        assert kinds == [("PUT", b"lib/w"), ("DELETE", b"lib/w")], kinds

        lease = await c.lease(30)
        await c.put(b"lib/l", b"v", lease=lease)
        await lease.refresh()
        assert await lease.granted_ttl() == 30
        assert await lease.keys() == [b"lib/l"]
        await lease.revoke()
        assert await c.get(b"lib/l") is None

        lock = c.lock(b"lib/lock", ttl=10)
        await lock.acquire()
        assert await lock.is_acquired()
        await lock.release()

        status = await c.status()
        assert status.leader is not None
        members = [m async for m in c.members()]
        assert members, members
        deleted = await c.delete_prefix(b"lib/")
        assert deleted.deleted == 2, deleted.deleted  # lib/a and lib/b


if __name__ == "__main__":
    asyncio.run(workload(sys.argv[1], int(sys.argv[2])))
    print("workload ok")
