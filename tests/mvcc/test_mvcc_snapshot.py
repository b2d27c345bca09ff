"""Snapshots of the MVCC store: deterministic bytes, history since the compact
revision included, all-or-nothing restore of untrusted bytes."""

from __future__ import annotations

import zlib

import msgpack
import pytest

from raftkv.kv.mvcc import (
    Compacted,
    LeaseNotFound,
    MVCCStore,
    SnapshotError,
)
from raftkv.kv.mvcc import snapshot as snap


def history() -> MVCCStore:
    s = MVCCStore(lease_exists=lambda lease: lease == 3)
    s.put(b"a", b"1")  # 2
    s.put(b"b", b"1", lease=3)  # 3
    s.put(b"a", b"2")  # 4
    s.delete_range(b"b")  # 5
    s.put(b"b", b"2")  # 6
    s.put(b"c", b"1")  # 7
    s.compact(4)
    return s


def answers(s: MVCCStore) -> list[object]:
    out: list[object] = [s.revision, s.compact_revision]
    for rev in range(s.compact_revision, s.revision + 1):
        out.append(s.range(b"\x00", b"\x00", revision=rev))
    out.append(s.events(s.compact_revision + 1))
    return out


def test_equal_stores_give_equal_bytes() -> None:
    assert history().snapshot() == history().snapshot()
    assert MVCCStore().snapshot() == MVCCStore().snapshot()


def test_restore_gives_the_same_answers_and_the_same_future() -> None:
    a = history()
    b = MVCCStore.from_snapshot(a.snapshot(), lease_exists=lambda lease: lease == 3)
    assert answers(b) == answers(a)
    for s in (a, b):
        s.put(b"a", b"3")
        s.delete_range(b"c")
        s.compact(6)
    assert answers(b) == answers(a)
    assert b.snapshot() == a.snapshot()
    with pytest.raises(Compacted):
        b.range(b"a", revision=5)


def test_restore_keeps_the_configuration() -> None:
    s = MVCCStore()
    s.restore(history().snapshot())
    with pytest.raises(LeaseNotFound):
        s.put(b"x", lease=3)


def test_restore_of_an_empty_store() -> None:
    s = history()
    s.restore(MVCCStore().snapshot())
    assert s.revision == 1
    assert s.compact_revision == -1
    assert len(s) == 0


def _frame(body: bytes, version: int = snap.VERSION) -> bytes:
    return snap.MAGIC + bytes((version,)) + zlib.crc32(body).to_bytes(4, "big") + body


def _body(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


GOOD = history().snapshot()
GOOD_OBJ = msgpack.unpackb(GOOD[9:], raw=False)
FLAT = GOOD_OBJ[2]

# `history()` as format 1 wrote it (key indexes beside the kvs), from before format 2.
V1 = bytes.fromhex(
    "524b564d01a5c1440d9407049394c401610400919402020092040094c401620600929402030094"
    "030005009401060092060094c4016307009194010700920700dc00230300c401620301c4013103"
    "0400c401610202c40132000500c401620000c400000600c401620601c40132000700c401630701"
    "c4013100"
)
V1_OBJ = msgpack.unpackb(V1[9:], raw=False)


def _with(**changes: object) -> bytes:
    current, compact, flat = (list(x) if isinstance(x, list) else x for x in GOOD_OBJ)
    obj = {"current": current, "compact": compact, "flat": flat}
    obj.update(changes)
    return _frame(_body([obj["current"], obj["compact"], obj["flat"]]))


def _v1_with(**changes: object) -> bytes:
    current, compact, idx, flat = (list(x) if isinstance(x, list) else x for x in V1_OBJ)
    obj = {"current": current, "compact": compact, "idx": idx, "flat": flat}
    obj.update(changes)
    return _frame(_body([obj["current"], obj["compact"], obj["idx"], obj["flat"]]), 1)


def test_format_1_is_still_read_and_rewritten_as_format_2() -> None:
    s = MVCCStore.from_snapshot(V1, lease_exists=lambda lease: lease == 3)
    assert answers(s) == answers(history())
    assert s.snapshot() == GOOD


def test_rebuilt_indexes_answer_like_the_originals() -> None:
    """Compaction leaves generations without their first put, closed generations
    holding a put and a tombstone, and keys that are gone: every later answer must be
    the same after a restore, including versions counted from the kept revisions."""
    a = MVCCStore()
    a.put(b"k", b"1")  # 2
    a.put(b"k", b"2")  # 3
    a.put(b"k", b"3")  # 4
    a.delete_range(b"k")  # 5
    a.put(b"k", b"4")  # 6
    a.put(b"k", b"5")  # 7
    a.put(b"gone", b"x")  # 8
    a.delete_range(b"gone")  # 9
    a.put(b"m", b"1")  # 10
    a.delete_range(b"m")  # 11
    a.compact(4)
    b = MVCCStore.from_snapshot(a.snapshot())
    assert answers(b) == answers(a)
    for s in (a, b):
        s.put(b"k", b"6")
        s.put(b"m", b"2")
        s.compact(10)
    assert answers(b) == answers(a)
    assert [kv.version for kv in b.range(b"k").kvs] == [3]
    assert b.snapshot() == a.snapshot()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a raftkv mvcc snapshot"),
        (b"RKVS" + GOOD[4:], "not a raftkv mvcc snapshot"),
        (GOOD[:4] + b"\x09" + GOOD[5:], "unsupported"),
        (GOOD[:-1], "checksum"),
        (GOOD[:-1] + bytes((GOOD[-1] ^ 1,)), "checksum"),
        (_frame(b"\xc1"), "malformed"),
        (_frame(_body([1, 2])), "malformed"),
        (_frame(_body(7)), "expected an array"),
        (_with(current=0), "bad store revisions"),
        (_with(compact=99), "bad store revisions"),
        (_with(current=b"x"), "expected an int"),
        (_with(flat=FLAT[:-1]), "multiple of 7"),
        (_with(flat=FLAT + FLAT[:7]), "duplicate"),
        (_with(flat=[*FLAT, 99, 0, b"z", 99, 1, b"", 0]), "bad, duplicate"),
        (_with(flat=FLAT[7:14] + FLAT[:7] + FLAT[14:]), "out-of-order"),
        (_with(flat=[x if x != b"a" else "a" for x in FLAT]), "expected bytes"),
        (_with(current=8, flat=[*FLAT, 8, 0, b"z", 0, 0, b"", 0]), "generation without a put"),
        (_with(current=8, flat=[*FLAT, 8, 0, b"c", 8, 1, b"", 0]), "changes create revision"),
        (_v1_with(flat=V1_OBJ[3] + [7, 1, b"z", 7, 1, b"", 0]), "no key index names"),
        (_v1_with(idx=[[b"q", 2, 0, [[1, 2, 0, [2, 0]]]]]), "missing kv"),
        (_v1_with(idx=[[b"q", 2, 0, [[1, 2, 0, [2]]]]]), "odd revision"),
        (_v1_with(idx=[[b"q", 2, 0, []]]), "empty key index"),
        (_v1_with(idx=V1_OBJ[2] + V1_OBJ[2][:1]), "malformed"),
    ],
)
def test_bad_snapshots_are_refused_and_change_nothing(data: bytes, match: str) -> None:
    s = history()
    before = s.snapshot()
    with pytest.raises(SnapshotError, match=match) as e:
        s.restore(data)
    assert e.value.code == "bad_snapshot"
    assert s.snapshot() == before


def test_snapshot_must_be_bytes() -> None:
    with pytest.raises(SnapshotError):
        MVCCStore().restore("nope")  # type: ignore[arg-type]
