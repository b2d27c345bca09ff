"""Snapshots stand in for the log prefix they cover: restoring one and applying the
rest gives exactly the state of applying everything; corrupt snapshots are refused
with a typed error and leave the store untouched."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.kv import Command, KVStore, Op, SnapshotError

keys = st.text(st.sampled_from("ab/é"), max_size=3)
commands = st.builds(
    Command,
    op=st.sampled_from(Op),
    key=keys,
    value=st.binary(max_size=4),
    request_id=st.one_of(st.just(b""), st.sampled_from([bytes([i]) * 16 for i in range(6)])),
    if_match=st.one_of(st.none(), st.integers(0, 8)),
    if_none_match=st.booleans(),
)


def state(s: KVStore) -> tuple[object, ...]:
    return (s.applied_index, s.range("", 10_000), s.approx_bytes, len(s), s.snapshot())


@settings(max_examples=200)
@given(st.lists(commands, max_size=40), st.data())
def test_snapshot_restore_then_continue_equals_uninterrupted(
    cmds: list[Command], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(cmds)))
    capacity = data.draw(st.integers(1, 4))
    straight = KVStore(dedup_capacity=capacity)
    results = [straight.apply(i, c) for i, c in enumerate(cmds, start=1)]

    first = KVStore(dedup_capacity=capacity)
    for i, c in enumerate(cmds[:cut], start=1):
        first.apply(i, c)
    view = first.snapshot_view()
    first.apply(len(cmds) + 1, Command(Op.PUT, "after-the-view", b"x"))  # view is frozen
    restored = KVStore.from_snapshot(view.serialize(), dedup_capacity=capacity)
    tail = [restored.apply(i, c) for i, c in enumerate(cmds[cut:], start=cut + 1)]

    assert tail == results[cut:]
    assert state(restored) == state(straight)


def test_snapshot_of_empty_store_round_trips() -> None:
    restored = KVStore.from_snapshot(KVStore().snapshot())
    assert len(restored) == 0
    assert restored.applied_index == 0


def test_restore_trims_dedup_to_own_capacity_oldest_first() -> None:
    s = KVStore()
    for i in range(1, 6):
        s.apply(i, Command(Op.PUT, "k", b"", bytes([i]) * 16))
    small = KVStore.from_snapshot(s.snapshot(), dedup_capacity=2)
    assert small.dedup_size == 2
    assert small.apply(6, Command(Op.PUT, "k", b"", bytes([5]) * 16)).replayed
    assert not small.apply(7, Command(Op.PUT, "k", b"", bytes([1]) * 16)).replayed


def _store() -> KVStore:
    s = KVStore()
    s.apply(1, Command(Op.PUT, "a", b"1", b"r" * 16))
    s.apply(2, Command(Op.PUT, "b", b"2"))
    return s


def _reseal(body: object, version: int = 1) -> bytes:
    import zlib

    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return b"RKVS" + bytes((version,)) + zlib.crc32(packed).to_bytes(4, "big") + packed


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"RKVS",
        b"RKVS\x03\x00\x00\x00\x00",  # unknown version
        b"nope" * 10,
        _reseal([1, ["a"], [b"x"], [1]]),  # wrong arity
        _reseal([1, ["b", "a"], [b"x", b"y"], [1, 1], []]),  # unsorted keys
        _reseal([1, ["a", "a"], [b"x", b"y"], [1, 1], []]),  # duplicate keys
        _reseal([1, ["b", "a", "b"], [b"x", b"y", b"z"], [1, 1, 1], []], 2),  # duplicates, v2
        _reseal([1, ["a"], [b"x"], [2], []]),  # revision beyond applied index
        _reseal([1, ["a"], ["x"], [1], []]),  # str value
        _reseal([1, [1], [b"x"], [1], []]),  # int key
        _reseal([1, ["a"], [b"x", b"y"], [1], []]),  # lengths disagree
        _reseal([1, [], [], [], [b"r", 9, "k", True, 1, None, 0, False]]),  # bad op
        _reseal([1, [], [], [], [b"r", 1, "k", True, 1, "bogus", 0, False]]),  # bad error
        _reseal([-1, [], [], [], []]),
        _reseal({"a": 1}),
    ],
)
def test_corrupt_snapshots_raise_snapshot_error_and_change_nothing(blob: bytes) -> None:
    s = _store()
    before = state(s)
    with pytest.raises(SnapshotError):
        s.restore(blob)
    assert state(s) == before


@given(st.data())
def test_any_mutation_of_a_snapshot_is_detected(data: st.DataObject) -> None:
    raw = bytearray(_store().snapshot())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SnapshotError):
        KVStore.from_snapshot(bytes(raw))


@given(st.binary(max_size=200))
def test_random_bytes_raise_snapshot_error(blob: bytes) -> None:
    with pytest.raises(SnapshotError):
        KVStore.from_snapshot(blob)


def test_chunked_array_packing_is_byte_identical_to_one_packb() -> None:
    """Snapshots are packed slice by slice (so the event loop is not stalled); the
    bytes must be exactly those of one msgpack.packb call."""
    import random

    import msgpack

    from raftkv.kv.store import _packed_array

    rng = random.Random(7)
    for n in (0, 1, 15, 16, 4095, 4096, 4097, 70_000):
        items = [rng.choice([b"v" * rng.randint(0, 40), f"k{i}", i]) for i in range(n)]
        assert b"".join(_packed_array(items)) == msgpack.packb(items, use_bin_type=True)


def test_version_1_snapshots_with_sorted_keys_still_restore() -> None:
    """Format 1 stored keys sorted; format 2 stores them in the store's own order (a
    snapshot reads the dicts front to back). Members must read both."""
    old = _reseal([3, ["a", "b"], [b"1", b"2"], [1, 3], []], 1)
    s = KVStore.from_snapshot(old)
    assert s.get("a") == (b"1", 1)
    assert s.get("b") == (b"2", 3)
    new = _reseal([3, ["b", "a"], [b"2", b"1"], [3, 1], []], 2)
    t = KVStore.from_snapshot(new)
    assert [k for k, _, _ in t.range("", 10)] == ["a", "b"]
    assert KVStore.from_snapshot(t.snapshot()).range("", 10) == t.range("", 10)
