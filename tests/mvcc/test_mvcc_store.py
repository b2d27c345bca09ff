"""etcd v3.5 behaviours of the MVCC store, one test (or table) per behaviour."""

from __future__ import annotations

import pytest

from raftkv.kv.mvcc import (
    Compacted,
    EmptyKey,
    Event,
    EventType,
    FutureRevision,
    KeyNotFound,
    KeyValue,
    LeaseNotFound,
    LeaseProvided,
    MVCCStore,
    SortOrder,
    SortTarget,
    ValueProvided,
    prefix_end,
)


def keys(store: MVCCStore, key: bytes, end: bytes = b"", **kw: object) -> list[bytes]:
    return [kv.key for kv in store.range(key, end, **kw).kvs]  # type: ignore[arg-type]


def filled(*items: bytes) -> MVCCStore:
    s = MVCCStore()
    for k in items:
        s.put(k, b"v-" + k)
    return s


# -- revisions -----------------------------------------------------------------------


def test_revision_starts_at_1_and_the_first_write_makes_it_2() -> None:
    s = MVCCStore()
    assert s.revision == 1
    assert s.compact_revision == -1
    assert s.range(b"a").revision == 1  # an empty etcd reports header revision 1
    r = s.put(b"a", b"1")
    assert r.revision == 2
    assert s.revision == 2
    assert s.get(b"a") == KeyValue(b"a", 2, 2, 1, b"1")


def test_each_write_bumps_the_revision_by_exactly_one() -> None:
    s = MVCCStore()
    assert [s.put(k, b"v").revision for k in (b"a", b"b", b"a")] == [2, 3, 4]
    assert s.delete_range(b"a", b"c").revision == 5  # two keys, one revision
    assert s.revision == 5


def test_reads_do_not_bump_the_revision() -> None:
    s = filled(b"a")
    s.range(b"a")
    s.range(b"\x00", b"\x00", count_only=True)
    assert s.revision == 2


def test_delete_of_an_absent_key_does_not_bump_the_revision() -> None:
    s = filled(b"a")
    r = s.delete_range(b"zz")
    assert (r.deleted, r.revision, r.events) == (0, 2, ())
    assert s.delete_range(b"b", b"c").deleted == 0
    assert s.revision == 2


def test_version_is_1_on_create_grows_per_put_and_resets_after_delete() -> None:
    s = MVCCStore()
    s.put(b"k", b"1")  # 2
    s.put(b"k", b"2")  # 3
    assert s.get(b"k") == KeyValue(b"k", 2, 3, 2, b"2")
    s.delete_range(b"k")  # 4
    assert s.get(b"k") is None
    s.put(b"k", b"3")  # 5
    assert s.get(b"k") == KeyValue(b"k", 5, 5, 1, b"3")


def test_range_at_a_past_revision_sees_the_store_as_it_was() -> None:
    s = MVCCStore()
    s.put(b"a", b"1")  # 2
    s.put(b"b", b"1")  # 3
    s.put(b"a", b"2")  # 4
    s.delete_range(b"b")  # 5
    everything = (b"\x00", b"\x00")
    assert [kv.value for kv in s.range(*everything, revision=2).kvs] == [b"1"]
    assert keys(s, *everything, revision=3) == [b"a", b"b"]
    assert s.range(b"a", revision=3).kvs[0] == KeyValue(b"a", 2, 2, 1, b"1")
    assert s.range(b"a", revision=4).kvs[0] == KeyValue(b"a", 2, 4, 2, b"2")
    assert keys(s, *everything, revision=5) == [b"a"]
    assert keys(s, *everything, revision=1) == []
    # the header is the current revision, whatever revision was read
    assert s.range(b"a", revision=2).revision == 5
    # revision <= 0 reads the current revision
    assert keys(s, *everything, revision=-3) == [b"a"]


def test_range_above_the_current_revision_is_a_future_revision() -> None:
    s = filled(b"a")
    with pytest.raises(FutureRevision, match="required revision is a future revision") as e:
        s.range(b"a", revision=3)
    assert e.value.code == "future_revision"


# -- compaction ------------------------------------------------------------------------


def test_range_below_the_compact_revision_is_compacted_and_names_it() -> None:
    s = filled(b"a", b"b", b"c")  # revision 4
    assert s.compact(3).revision == 4
    assert s.revision == 4  # compaction is not a write
    with pytest.raises(Compacted, match="required revision has been compacted") as e:
        s.range(b"a", revision=2)
    assert e.value.compact_revision == 3
    assert e.value.code == "compacted"
    assert "compact revision 3" in str(e.value)
    # reading at the compact revision itself is allowed, and complete
    assert keys(s, b"\x00", b"\x00", revision=3) == [b"a", b"b"]


@pytest.mark.parametrize(
    ("compact_to", "error"),
    [
        (3, Compacted),  # == compact revision
        (2, Compacted),  # below it
        (6, FutureRevision),  # above the current revision
    ],
)
def test_compaction_errors(compact_to: int, error: type[Exception]) -> None:
    s = filled(b"a", b"b", b"c", b"d")  # revision 5
    s.compact(3)
    with pytest.raises(error):
        s.compact(compact_to)
    assert s.compact_revision == 3


def test_compaction_keeps_what_reads_at_or_after_it_need() -> None:
    s = MVCCStore()
    s.put(b"a", b"1")  # 2
    s.put(b"a", b"2")  # 3
    s.put(b"b", b"1")  # 4
    s.delete_range(b"b")  # 5
    s.put(b"c", b"1")  # 6
    s.put(b"a", b"3")  # 7
    before = {r: s.range(b"\x00", b"\x00", revision=r).kvs for r in range(4, 8)}
    s.compact(4)
    assert {r: s.range(b"\x00", b"\x00", revision=r).kvs for r in range(4, 8)} == before
    s.compact(5)  # b's whole history (created 4, deleted 5) is gone
    assert s.range(b"b", revision=5).kvs == ()
    assert s.get(b"a", revision=5) == KeyValue(b"a", 2, 3, 2, b"2")
    s.compact(7)
    assert s.get(b"a") == KeyValue(b"a", 2, 7, 3, b"3")
    assert len(s) == 2


def test_compact_to_the_current_revision_then_write() -> None:
    s = filled(b"a")
    s.compact(2)
    s.put(b"a", b"x")
    assert s.get(b"a") == KeyValue(b"a", 2, 3, 2, b"x")


# -- range_end conventions ------------------------------------------------------------

KEYSPACE = (b"\x00", b"a", b"ab", b"abc", b"a\xff", b"b", b"c")  # byte order


@pytest.mark.parametrize(
    ("key", "end", "want"),
    [
        (b"ab", b"", [b"ab"]),  # empty range_end: just the key
        (b"zz", b"", []),
        (b"ab", b"\x00", [b"ab", b"abc", b"a\xff", b"b", b"c"]),  # "\0": every key >= key
        (b"\x00", b"\x00", list(KEYSPACE)),  # all keys
        (b"a", prefix_end(b"a"), [b"a", b"ab", b"abc", b"a\xff"]),  # prefix
        (b"ab", prefix_end(b"ab"), [b"ab", b"abc"]),
        (b"a", b"b", [b"a", b"ab", b"abc", b"a\xff"]),  # [key, end)
        (b"b", b"a", []),  # end < key: nothing
        (b"b", b"b", []),
    ],
)
def test_range_end_conventions(key: bytes, end: bytes, want: list[bytes]) -> None:
    s = filled(*KEYSPACE)
    assert keys(s, key, end) == want
    assert s.range(key, end, count_only=True).count == len(want)


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"a", b"b"), (b"ab", b"ac"), (b"a\xff", b"b"), (b"\xff", b"\x00"), (b"\xff\xff", b"\x00")],
)
def test_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


@pytest.mark.parametrize("call", ["range", "put", "delete_range"])
def test_an_empty_key_is_rejected(call: str) -> None:
    s = MVCCStore()
    with pytest.raises(EmptyKey, match="key is not provided"):
        getattr(s, call)(b"")


# -- sort, limit, count, filters ------------------------------------------------------


def sorted_store() -> MVCCStore:
    s = MVCCStore()
    s.put(b"a", b"3")  # 2: a created 2
    s.put(b"b", b"1")  # 3: b created 3
    s.put(b"c", b"2")  # 4: c created 4
    s.put(b"a", b"3")  # 5: a version 2
    s.put(b"a", b"3")  # 6: a version 3
    s.put(b"b", b"1")  # 7: b version 2
    return s  # a: v3 mod 6 c2 "3"; b: v2 mod 7 c3 "1"; c: v1 mod 4 c4 "2"


@pytest.mark.parametrize(
    ("order", "target", "want"),
    [
        (SortOrder.NONE, SortTarget.KEY, b"abc"),
        (SortOrder.ASCEND, SortTarget.KEY, b"abc"),
        (SortOrder.DESCEND, SortTarget.KEY, b"cba"),
        (SortOrder.NONE, SortTarget.VERSION, b"cba"),  # NONE with a target: ascending
        (SortOrder.ASCEND, SortTarget.VERSION, b"cba"),
        (SortOrder.DESCEND, SortTarget.VERSION, b"abc"),
        (SortOrder.ASCEND, SortTarget.CREATE, b"abc"),
        (SortOrder.DESCEND, SortTarget.CREATE, b"cba"),
        (SortOrder.ASCEND, SortTarget.MOD, b"cab"),
        (SortOrder.DESCEND, SortTarget.MOD, b"bac"),
        (SortOrder.ASCEND, SortTarget.VALUE, b"bca"),
        (SortOrder.DESCEND, SortTarget.VALUE, b"acb"),
    ],
)
def test_sort(order: SortOrder, target: SortTarget, want: bytes) -> None:
    got = keys(sorted_store(), b"a", b"d", sort_order=order, sort_target=target)
    assert b"".join(got) == want


def test_sort_ties_keep_key_order_both_ways() -> None:
    s = filled(b"a", b"b", b"c")  # all version 1
    for order in (SortOrder.ASCEND, SortOrder.DESCEND):
        got = keys(s, b"a", b"d", sort_order=order, sort_target=SortTarget.VERSION)
        assert got == [b"a", b"b", b"c"]


def test_a_sort_target_without_a_sort_order_sorts_only_the_first_limit_plus_one() -> None:
    """etcd's rangeLimit: only a sort order (or a filter) makes it read every key."""
    s = sorted_store()  # by mod revision: c (4), a (6), b (7)
    r = s.range(b"a", b"d", limit=1, sort_target=SortTarget.MOD)  # reads a, b
    assert [kv.key for kv in r.kvs] == [b"a"]
    r = s.range(b"a", b"d", limit=1, sort_target=SortTarget.MOD, sort_order=SortOrder.ASCEND)
    assert [kv.key for kv in r.kvs] == [b"c"]


def test_limit_sets_more_and_count_counts_every_key_in_the_range() -> None:
    s = filled(b"a", b"b", b"c", b"d")
    r = s.range(b"a", b"\x00", limit=2)
    assert [kv.key for kv in r.kvs] == [b"a", b"b"]
    assert r.more
    assert r.count == 4
    r = s.range(b"a", b"\x00", limit=4)
    assert len(r.kvs) == 4
    assert not r.more
    assert r.count == 4
    r = s.range(b"a", b"\x00", limit=0)
    assert len(r.kvs) == 4
    assert not r.more
    # limit applies after sorting: the top two by descending key
    r = s.range(b"a", b"\x00", limit=2, sort_order=SortOrder.DESCEND)
    assert [kv.key for kv in r.kvs] == [b"d", b"c"]
    assert r.more


def test_count_only_returns_no_kvs() -> None:
    s = filled(b"a", b"b", b"c")
    r = s.range(b"a", b"\x00", count_only=True, limit=1)
    assert (r.kvs, r.more, r.count, r.revision) == ((), False, 3, 4)


def test_keys_only_blanks_values() -> None:
    s = filled(b"a")
    assert s.range(b"a", keys_only=True).kvs == (KeyValue(b"a", 2, 2, 1, b""),)


@pytest.mark.parametrize(
    ("filters", "want"),
    [
        ({"min_mod_revision": 5}, b"ab"),
        ({"max_mod_revision": 5}, b"c"),
        ({"min_mod_revision": 5, "max_mod_revision": 6}, b"a"),
        ({"min_create_revision": 3}, b"bc"),
        ({"max_create_revision": 3}, b"ab"),
        ({"min_create_revision": 3, "max_create_revision": 3}, b"b"),
        ({"min_mod_revision": 100}, b""),
    ],
)
def test_min_max_revision_filters(filters: dict[str, int], want: bytes) -> None:
    r = sorted_store().range(b"a", b"d", **filters)  # type: ignore[arg-type]
    assert b"".join(kv.key for kv in r.kvs) == want
    assert r.count == 3  # before the filters, as in etcd


def test_filters_apply_before_the_limit() -> None:
    r = sorted_store().range(b"a", b"d", min_create_revision=3, limit=1)
    assert [kv.key for kv in r.kvs] == [b"b"]
    assert r.more


# -- put and delete ------------------------------------------------------------------


def test_put_returns_prev_kv_when_asked_and_events_always() -> None:
    s = filled(b"a")
    old = s.get(b"a")
    r = s.put(b"a", b"new", prev_kv=True)
    new = KeyValue(b"a", 2, 3, 2, b"new")
    assert r.prev_kv == old
    assert r.events == (Event(EventType.PUT, new, old),)
    assert s.put(b"a", b"x").prev_kv is None


def test_put_ignore_value_and_ignore_lease_keep_the_old_ones() -> None:
    s = MVCCStore(lease_exists=lambda lease: lease == 7)
    s.put(b"a", b"v", lease=7)
    s.put(b"a", ignore_value=True)
    assert s.get(b"a") == KeyValue(b"a", 2, 3, 2, b"v", 0)
    s.put(b"a", b"w", lease=7)
    s.put(b"a", b"z", ignore_lease=True)
    assert s.get(b"a") == KeyValue(b"a", 2, 5, 4, b"z", 7)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"ignore_value": True}, KeyNotFound),
        ({"ignore_lease": True}, KeyNotFound),
        ({"value": b"x", "ignore_value": True}, ValueProvided),
        ({"lease": 7, "ignore_lease": True}, LeaseProvided),
        ({"lease": 8}, LeaseNotFound),
    ],
)
def test_put_errors_change_nothing(kwargs: dict[str, object], error: type[Exception]) -> None:
    s = MVCCStore(lease_exists=lambda lease: lease == 7)
    s.put(b"other")
    with pytest.raises(error):
        s.put(b"a", **kwargs)  # type: ignore[arg-type]
    assert s.revision == 2
    assert s.get(b"a") is None


def test_without_a_lease_check_every_lease_is_unknown() -> None:
    with pytest.raises(LeaseNotFound, match="lease not found") as e:
        MVCCStore().put(b"a", lease=0x10)
    assert e.value.lease == 0x10


def test_delete_range_returns_count_prev_kvs_and_one_event_per_key() -> None:
    s = filled(b"a", b"b", b"c")
    before = s.range(b"a", b"c").kvs
    r = s.delete_range(b"a", b"c", prev_kv=True)
    assert (r.revision, r.deleted, r.prev_kvs) == (5, 2, before)
    assert r.events == (
        Event(EventType.DELETE, KeyValue(b"a", 0, 5, 0), before[0]),
        Event(EventType.DELETE, KeyValue(b"b", 0, 5, 0), before[1]),
    )
    assert s.delete_range(b"c").prev_kvs == ()
    assert keys(s, b"\x00", b"\x00") == []


# -- history ---------------------------------------------------------------------------


def test_events_since_a_revision_replay_what_the_writes_returned() -> None:
    s = MVCCStore()
    produced: list[Event] = []
    produced += s.put(b"a", b"1").events
    produced += s.put(b"b", b"1").events
    produced += s.delete_range(b"a", b"c").events
    produced += s.put(b"a", b"2").events
    assert s.events(2) == produced
    assert s.events(4) == produced[2:]
    assert s.events(s.revision + 1) == []
    with pytest.raises(FutureRevision):
        s.events(s.revision + 2)
    s.compact(3)
    with pytest.raises(Compacted):
        s.events(3)
    assert s.events(4) == produced[2:]  # prev kvs of later events survive compaction
