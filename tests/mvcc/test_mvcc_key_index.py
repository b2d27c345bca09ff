"""One key's generations of revisions (etcd's key_index_test.go, ported), and the
sorted index over all keys."""

from __future__ import annotations

import pytest

from raftkv.kv.mvcc.index import TreeIndex
from raftkv.kv.mvcc.key_index import KeyIndex, RevisionNotFound
from raftkv.kv.mvcc.kv import Revision as R


def etcd_test_key_index() -> KeyIndex:
    """etcd's newTestKeyIndex:
    {{2}[1], {4}[2], {6}(t)}, {{8}[1], {10}[2], {12}(t)}, {{14}[1], {14.1}[2], {16}(t)}, {}
    """
    ki = KeyIndex(b"foo")
    ki.put(R(2))
    ki.put(R(4))
    ki.tombstone(R(6))
    ki.put(R(8))
    ki.put(R(10))
    ki.tombstone(R(12))
    ki.put(R(14))
    ki.put(R(14, 1))
    ki.tombstone(R(16))
    return ki


# etcd's TestKeyIndexGet, after compact(4): (at_rev, (mod, created, version) or None)
GET_CASES = [
    (17, None),
    (16, None),
    (15, (R(14, 1), R(14), 2)),
    (14, (R(14, 1), R(14), 2)),
    (13, None),
    (12, None),
    (11, (R(10), R(8), 2)),
    (10, (R(10), R(8), 2)),
    (9, (R(8), R(8), 1)),
    (8, (R(8), R(8), 1)),
    (7, None),
    (6, None),
    (5, (R(4), R(2), 2)),
    (4, (R(4), R(2), 2)),
    (3, None),  # compacted away
    (2, None),
    (1, None),
    (0, None),
]


@pytest.mark.parametrize(("at_rev", "want"), GET_CASES)
def test_get_after_compaction_keeps_versions_and_create_revisions(
    at_rev: int, want: tuple[R, R, int] | None
) -> None:
    ki = etcd_test_key_index()
    kept: set[R] = set()
    ki.compact(4, kept)
    assert kept == {R(4)}
    if want is None:
        with pytest.raises(RevisionNotFound):
            ki.get(at_rev)
    else:
        assert ki.get(at_rev) == want


# etcd's TestKeyIndexCompactAndKeep: (compact rev, revs left per generation, kept)
COMPACT_CASES = [
    (1, [[2, 4, 6], [8, 10, 12], [14, (14, 1), 16], []], set()),
    (2, [[2, 4, 6], [8, 10, 12], [14, (14, 1), 16], []], {R(2)}),
    (3, [[2, 4, 6], [8, 10, 12], [14, (14, 1), 16], []], {R(2)}),
    (4, [[4, 6], [8, 10, 12], [14, (14, 1), 16], []], {R(4)}),
    (5, [[4, 6], [8, 10, 12], [14, (14, 1), 16], []], {R(4)}),
    (6, [[8, 10, 12], [14, (14, 1), 16], []], set()),
    (7, [[8, 10, 12], [14, (14, 1), 16], []], set()),
    (8, [[8, 10, 12], [14, (14, 1), 16], []], {R(8)}),
    (10, [[10, 12], [14, (14, 1), 16], []], {R(10)}),
    (12, [[14, (14, 1), 16], []], set()),
    (14, [[(14, 1), 16], []], {R(14, 1)}),
    (15, [[(14, 1), 16], []], {R(14, 1)}),
    (16, [[]], set()),
    (17, [[]], set()),
]


def _revs(spec: list[list[int | tuple[int, int]]]) -> list[list[R]]:
    return [[R(r) if isinstance(r, int) else R(*r) for r in g] for g in spec]


@pytest.mark.parametrize(("at_rev", "left", "kept"), COMPACT_CASES)
def test_compact_drops_what_reads_at_or_after_the_revision_cannot_reach(
    at_rev: int, left: list[list[int | tuple[int, int]]], kept: set[R]
) -> None:
    ki = etcd_test_key_index()
    got: set[R] = set()
    ki.compact(at_rev, got)
    assert [g.revs for g in ki.generations] == _revs(left)
    assert got == kept
    assert ki.is_empty() == (at_rev >= 16)


def test_compaction_is_the_same_in_steps_or_at_once() -> None:
    for at_rev in range(1, 18):
        stepwise = etcd_test_key_index()
        for r in range(1, at_rev + 1):
            if not stepwise.is_empty():
                stepwise.compact(r, set())
        at_once = etcd_test_key_index()
        at_once.compact(at_rev, set())
        assert stepwise.generations == at_once.generations, at_rev


def test_generation_remembers_created_and_version_after_compaction() -> None:
    ki = KeyIndex(b"k")
    for r in (2, 3, 4, 5):
        ki.put(R(r))
    ki.compact(4, set())
    assert [g.revs for g in ki.generations] == [[R(4), R(5)]]
    assert ki.get(5) == (R(5), R(2), 4)
    assert ki.get(4) == (R(4), R(2), 3)


def test_put_must_move_forward_and_tombstone_needs_a_live_key() -> None:
    ki = KeyIndex(b"k")
    with pytest.raises(RevisionNotFound):
        ki.tombstone(R(2))
    ki.put(R(3))
    with pytest.raises(ValueError):
        ki.put(R(3))
    ki.tombstone(R(4))
    with pytest.raises(RevisionNotFound):
        ki.tombstone(R(5))
    with pytest.raises(ValueError):
        KeyIndex(b"empty").compact(1, set())
    assert "KeyIndex(b'k'" in repr(ki)


def test_revisions_since() -> None:
    ki = etcd_test_key_index()
    assert ki.revisions_since(12) == [R(12), R(14), R(14, 1), R(16)]


def test_tree_index_ranges_counts_and_compaction_removes_empty_keys() -> None:
    t = TreeIndex()
    t.put(b"b", R(2))
    t.put(b"a", R(3))
    t.put(b"c", R(4))
    t.tombstone(b"b", R(5))
    assert [ki.key for ki in t.key_indexes()] == [b"a", b"b", b"c"]
    assert t.revisions(b"a", b"\x00", 5) == ([R(3), R(4)], 2)
    assert t.revisions(b"a", b"\x00", 4, limit=1) == ([R(3)], 3)
    assert t.count(b"a", b"c", 4) == 2
    assert t.keys_alive(b"a", b"\x00", 5) == [b"a", b"c"]
    assert t.get(b"b", 5) is None
    assert t.get(b"zz", 5) is None
    assert t.get(b"b", 4) == (R(2), R(2), 1)
    with pytest.raises(RevisionNotFound):
        t.tombstone(b"zz", R(6))
    assert t.compact(5) == {R(3), R(4)}
    assert len(t) == 2
    assert [ki.key for ki in t.key_indexes()] == [b"a", b"c"]
    with pytest.raises(ValueError):
        t.insert(KeyIndex(b"a"))
