"""The client's etcd-v3 calls against real members: txn, range, revisions and
compaction, leases, and watch (sync and async), one behaviour per test."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from cluster.harness import LocalCluster
from raftkv.client import (
    AsyncClient,
    BadRequest,
    Client,
    Compacted,
    LeaseNotFound,
    PreconditionFailed,
)
from raftkv.client_ops import (
    KV,
    Compare,
    DeleteRangeResult,
    Op,
    PutResult,
    RangeResult,
    TxnResult,
)
from raftkv.client_watch import WatchEvent

_names = itertools.count()


@pytest.fixture
def c(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster.endpoints()) as client:
        yield client


@pytest.fixture
def ns() -> str:
    """A key prefix of the test's own (the cluster is shared by the module)."""
    return f"t{next(_names)}/"


def events(w: object, n: int, timeout: float = 20.0) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    for _ in range(n):
        ev = w.get(timeout=timeout)  # type: ignore[attr-defined]
        assert ev is not None, f"only {len(out)} of {n} events arrived: {out}"
        out.append(ev)
    return out


# -- txn ------------------------------------------------------------------------------------


def test_txn_create_if_absent_else_read(c: Client, ns: str) -> None:
    k = ns + "k"

    def create_or_get(value: bytes) -> TxnResult:
        return c.txn().if_(Compare.create(k) == 0).then(Op.put(k, value)).else_(Op.get(k)).commit()

    first = create_or_get(b"one")
    assert first.succeeded
    assert isinstance(first.responses[0], PutResult)
    second = create_or_get(b"two")
    assert not second.succeeded
    got = second.responses[0]
    assert isinstance(got, RangeResult)
    assert [(kv.value, kv.create_revision) for kv in got.kvs] == [(b"one", first.revision)]
    assert second.revision == first.revision  # a failed compare writes nothing


def test_txn_compares_every_target(c: Client, ns: str) -> None:
    k = ns + "k"
    c.put(k, b"v1")
    c.put(k, b"v2")
    kv = c.get_kv(k)
    assert kv is not None
    assert kv.version == 2
    holds = [
        Compare.version(k) == 2,
        Compare.version(k) > 1,
        Compare.version(k) < 3,
        Compare.mod(k) == kv.mod_revision,
        Compare.create(k) == kv.create_revision,
        Compare.create(k) != 0,
        Compare.value(k) == b"v2",
        Compare.value(k) != "v1",
        Compare.lease(k) == 0,
        Compare.version(ns, prefix=True) > 0,
    ]
    for cmp in holds:
        assert c.txn().if_(cmp).commit().succeeded, cmp
    fails = [Compare.version(k) == 1, Compare.mod(k) < kv.mod_revision, Compare.value(k) == b"x"]
    for cmp in fails:
        assert not c.txn().if_(cmp).commit().succeeded, cmp


def test_txn_applies_all_ops_at_one_revision(c: Client, ns: str) -> None:
    c.put(ns + "gone", b"x")
    res = (
        c.txn()
        .then(
            Op.put(ns + "a", b"1", prev_kv=True),
            Op.put(ns + "b", b"2"),
            Op.delete(ns + "gone", prev_kv=True),
            # compares, nested ones too, see the key space as it was before the txn
            Op.txn([Compare.create(ns + "gone") == 0], [Op.put(ns + "never", b"x")], []),
            Op.get(ns, prefix=True),
        )
        .commit()
    )
    assert res.succeeded
    put_a, _, deleted, nested, listing = res.responses
    assert isinstance(put_a, PutResult)
    assert put_a.prev_kv is None
    assert isinstance(deleted, DeleteRangeResult)
    assert deleted.deleted == 1
    assert [kv.value for kv in deleted.prev_kvs] == [b"x"]
    assert isinstance(nested, TxnResult)
    assert not nested.succeeded
    assert isinstance(listing, RangeResult)
    assert [(kv.key, kv.mod_revision) for kv in listing.kvs] == [
        (ns.encode() + b"a", res.revision),
        (ns.encode() + b"b", res.revision),
    ]


def test_txn_writing_one_key_twice_is_refused(c: Client, ns: str) -> None:
    with pytest.raises(BadRequest) as exc:
        c.txn().then(Op.put(ns + "k", b"1"), Op.put(ns + "k", b"2")).commit()
    assert exc.value.code == "duplicate_key"


def test_txn_builder_keeps_etcd_order() -> None:
    from raftkv.client_ops import Txn

    t: Txn[None] = Txn(lambda op: None)
    t.then(Op.put("k", b"v"))
    with pytest.raises(ValueError, match="before"):
        t.if_(Compare.mod("k") == 1)
    with pytest.raises(TypeError):
        Txn(lambda op: None).if_(True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Compare.mod("k") == "5"  # noqa: B015


# -- range, revisions, compaction -------------------------------------------------------


def test_range_options(c: Client, ns: str) -> None:
    for k in "bca":
        c.put(ns + k, k.encode() * 2)
    r = c.range(ns, prefix=True)
    assert [kv.key_str for kv in r.kvs] == [ns + "a", ns + "b", ns + "c"]
    assert (r.count, r.more) == (3, False)
    r = c.range(ns, prefix=True, limit=2, sort_order="DESCEND", sort_target="CREATE")
    assert [kv.key_str for kv in r.kvs] == [ns + "a", ns + "c"]
    assert (r.count, r.more) == (3, True)
    r = c.range(ns + "a", ns + "c", keys_only=True)
    assert [(kv.key_str, kv.value) for kv in r.kvs] == [(ns + "a", b""), (ns + "b", b"")]
    assert c.range(ns, prefix=True, count_only=True).count == 3
    b = c.get_kv(ns + "b")
    assert b is not None
    r = c.range(ns, prefix=True, min_create_revision=b.create_revision + 1)
    assert [kv.key_str for kv in r.kvs] == [ns + "a", ns + "c"]
    assert c.range(ns, prefix=True, serializable=True).count == 3


def test_get_at_a_past_revision_with_metadata(c: Client, ns: str) -> None:
    k = ns + "k"
    first = c.put(k, b"old").revision
    second = c.put(k, b"new").revision
    now = c.get_kv(k)
    assert now == KV(k.encode(), b"new", first, second, 2, 0)
    assert c.get_kv(k, revision=first) == KV(k.encode(), b"old", first, first, 1, 0)
    assert c.range(k, revision=first).kvs[0].value == b"old"
    assert c.get_kv(k, revision=first - 1) is None
    assert c.get_kv(ns + "absent") is None


def test_compacted_revisions_raise_compacted(c: Client, ns: str) -> None:
    k = ns + "k"
    old = c.put(k, b"1").revision
    new = c.put(k, b"2").revision
    c.compact(new)
    for read in (
        lambda: c.get_kv(k, revision=old),
        lambda: c.range(k, revision=old),
        lambda: c.watch(k, start_revision=old).get(timeout=20),  # raised when read
    ):
        with pytest.raises(Compacted) as exc:
            read()
        assert exc.value.compact_revision >= new
    assert c.get_kv(k, revision=new) is not None


def test_delete_prefix_and_delete_range(c: Client, ns: str) -> None:
    for k in ("a", "b", "c", "d"):
        c.put(ns + k, b"x")
    res = c.delete_range(ns + "a", ns + "c", prev_kv=True)
    assert res.deleted == 2
    assert [kv.key_str for kv in res.prev_kvs] == [ns + "a", ns + "b"]
    assert c.delete_prefix(ns) == 2
    assert c.range(ns, prefix=True).count == 0


# -- leases ---------------------------------------------------------------------------------


def test_lease_lifecycle(c: Client, ns: str) -> None:
    g = c.lease_grant(30)
    assert g.id > 0
    assert g.ttl >= 30
    assert g.id in c.leases()
    c.put(ns + "a", b"1", lease=g.id)
    c.put(ns + "b", b"2", lease=g.id)
    kv = c.get_kv(ns + "a")
    assert kv is not None
    assert kv.lease == g.id
    t = c.lease_time_to_live(g.id, keys=True)
    assert (t.id, t.granted_ttl) == (g.id, g.ttl)
    assert 0 < t.ttl <= g.ttl
    assert sorted(t.keys) == [(ns + "a").encode(), (ns + "b").encode()]
    assert c.lease_keepalive_once(g.id) == g.ttl
    assert c.lease_revoke(g.id) == 2
    assert c.range(ns, prefix=True).count == 0
    assert c.lease_time_to_live(g.id).ttl == -1
    with pytest.raises(LeaseNotFound):
        c.lease_keepalive_once(g.id)
    with pytest.raises(LeaseNotFound):
        c.lease_revoke(g.id)
    with pytest.raises(LeaseNotFound):
        c.put(ns + "c", b"x", lease=g.id)


def test_lease_with_a_chosen_id(c: Client) -> None:
    g = c.lease_grant(10, id=0x7E57)
    assert g.id == 0x7E57
    try:
        with pytest.raises(Exception, match="lease_exists"):
            c.lease_grant(10, id=0x7E57)
    finally:
        c.lease_revoke(g.id)


def test_lease_object_revokes_on_close(c: Client, ns: str) -> None:
    with c.lease(10) as lease:
        c.put(ns + "k", b"v", lease=int(lease))
        assert lease.keepalive_once() >= 10
    assert c.get_kv(ns + "k") is None
    assert not lease.lost.is_set()


def test_conditional_put_still_works_on_mod_revision(c: Client, ns: str) -> None:
    k = ns + "k"
    rev = c.put(k, b"1").revision
    c.put(k, b"2", if_match=rev)
    with pytest.raises(PreconditionFailed) as exc:
        c.put(k, b"3", if_match=rev)
    assert exc.value.current_revision > rev


# -- watch ----------------------------------------------------------------------------------


def test_watch_from_now_sees_later_changes_in_order(c: Client, ns: str) -> None:
    with c.watch(ns, prefix=True) as w:
        revs = [c.put(ns + "a", b"1").revision, c.put(ns + "b", b"2").revision]
        revs.append(c.delete(ns + "a").revision)
        got = events(w, 3)
    assert [(e.type, e.key, e.revision) for e in got] == [
        ("PUT", (ns + "a").encode(), revs[0]),
        ("PUT", (ns + "b").encode(), revs[1]),
        ("DELETE", (ns + "a").encode(), revs[2]),
    ]
    assert w.last_revision >= revs[2]


def test_watch_replays_history_with_filters_and_prev_kv(c: Client, ns: str) -> None:
    k = ns + "k"
    start = c.put(k, b"1").revision
    c.put(k, b"2")
    c.delete(k)
    c.put(ns + "other", b"x")
    with c.watch(k, start_revision=start, prev_kv=True, no_delete=True) as w:
        got = events(w, 2)
    assert [(e.type, e.kv.value) for e in got] == [("PUT", b"1"), ("PUT", b"2")]
    assert got[0].prev_kv is None
    assert got[1].prev_kv is not None
    assert got[1].prev_kv.value == b"1"
    with c.watch(k, start_revision=start, no_put=True) as w:
        (deleted,) = events(w, 1)
    assert deleted.type == "DELETE"


def test_watch_progress_moves_the_resume_point_on_a_quiet_stream(c: Client, ns: str) -> None:
    with c.watch(ns + "quiet", heartbeat=0.1) as w:
        rev = c.put(ns + "elsewhere", b"x").revision
        assert w.get(timeout=0.5) is None  # nothing for this key...
        deadline_hits = 0
        while w.last_revision < rev:  # ...but the progress lines say how far it is
            assert w.get(timeout=0.2) is None
            deadline_hits += 1
            assert deadline_hits < 100, "no progress line moved the watch"


def test_async_client_txn_lease_and_watch(cluster: LocalCluster, ns: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(cluster.endpoints()) as ac:
            async with ac.lease(10) as lease, ac.watch(ns, prefix=True) as w:
                res = (
                    await ac.txn()
                    .if_(Compare.create(ns + "k") == 0)
                    .then(Op.put(ns + "k", b"v", lease=lease.id))
                    .commit()
                )
                assert res.succeeded
                ev = await w.get(timeout=20)
                assert ev is not None
                assert (ev.type, ev.revision) == ("PUT", res.revision)
                assert ev.kv.lease == lease.id
                assert (await ac.lease_time_to_live(lease.id, keys=True)).keys == [
                    (ns + "k").encode()
                ]
                assert await w.get(timeout=0.2) is None
                await ac.put(ns + "k2", b"x")
                ev = await w.get(timeout=20)  # a timed-out read does not lose events
                assert ev is not None
                assert ev.key == (ns + "k2").encode()
            assert await ac.get_kv(ns + "k") is None  # revoked on exit
            r = await ac.range(ns, prefix=True)
            assert [kv.key_str for kv in r.kvs] == [ns + "k2"]

    asyncio.run(scenario())
