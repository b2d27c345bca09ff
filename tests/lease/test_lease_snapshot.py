"""Snapshots of the lessor: deterministic bytes of the replicated state only,
all-or-nothing restore of untrusted bytes, and a restored lessor starts demoted."""

from __future__ import annotations

import zlib

import msgpack
import pytest

from raftkv.kv.lease import (
    FOREVER,
    MAX_LEASE_TTL,
    LeaseInfo,
    Lessor,
    NotPrimary,
    SnapshotError,
)
from raftkv.kv.lease import snapshot as snap

T0 = 50.0


def history(promoted: bool = False) -> Lessor:
    le = Lessor(min_ttl=2)
    if promoted:
        le.promote(T0)
    le.grant(0, 10, T0)  # 1
    le.grant(9, 1, T0)  # ttl 2
    le.grant(0, 30, T0)  # 2
    le.grant(-4, 60, T0)
    le.attach(1, b"b")
    le.attach(1, b"a")
    le.attach(9, b"z")
    le.attach(-4, b"m")
    le.revoke(2)
    return le


def answers(le: Lessor) -> list[object]:
    out: list[object] = [le.leases(), len(le)]
    out += [le.lookup(lid) for lid in range(-5, 12)]
    out += [le.lease_of(k) for k in (b"a", b"b", b"m", b"z", b"q")]
    return out


def test_equal_lessors_give_equal_bytes_whatever_their_time() -> None:
    assert history().snapshot() == history().snapshot()
    assert history(promoted=True).snapshot() == history().snapshot()
    assert Lessor().snapshot() == Lessor().snapshot()


def test_restore_gives_the_same_answers_and_the_same_future() -> None:
    a = history()
    b = Lessor.from_snapshot(a.snapshot(), min_ttl=2)
    assert answers(b) == answers(a)
    assert b.lookup(1) == LeaseInfo(1, 10, (b"a", b"b"))
    for le in (a, b):
        assert le.grant(0, 5, T0).id == 3
        le.on_put(b"a", 3)
        le.on_delete(b"z")
        assert le.revoke(-4) == [b"m"]
    assert answers(b) == answers(a)
    assert b.snapshot() == a.snapshot()


def test_a_restored_lessor_is_demoted_and_keeps_its_configuration() -> None:
    le = Lessor(min_ttl=7)
    le.promote(T0)
    le.restore(history(promoted=True).snapshot())
    assert not le.is_primary
    assert le.expiry(1) == FOREVER
    assert le.expired(T0 + 1e6) == []
    with pytest.raises(NotPrimary):
        le.renew(1, T0)
    assert le.grant(0, 1, T0).ttl == 7
    le.promote(T0)
    assert le.expiry(1) == T0 + 10


def test_restore_of_an_empty_lessor() -> None:
    le = history()
    le.restore(Lessor().snapshot())
    assert le.leases() == []
    assert le.lease_of(b"a") == 0
    assert le.grant(0, 10, T0).id == 1


def _frame(body: bytes, version: int = snap.VERSION) -> bytes:
    return snap.MAGIC + bytes((version,)) + zlib.crc32(body).to_bytes(4, "big") + body


def _body(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


GOOD = history().snapshot()
NEXT_ID, ENTRIES = msgpack.unpackb(GOOD[9:], raw=False)


def _with(next_id: object = NEXT_ID, entries: object = ENTRIES) -> bytes:
    return _frame(_body([next_id, entries]))


def test_the_frame_parses_as_documented() -> None:
    assert _with() == GOOD
    assert NEXT_ID == 3
    assert ENTRIES == [[-4, 60, [b"m"]], [1, 10, [b"a", b"b"]], [9, 2, [b"z"]]]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a raftkv lease snapshot"),
        (b"RKVM" + GOOD[4:], "not a raftkv lease snapshot"),
        (GOOD[:4] + b"\x09" + GOOD[5:], "unsupported"),
        (GOOD[:-1], "checksum"),
        (GOOD[:-1] + bytes((GOOD[-1] ^ 1,)), "checksum"),
        (_frame(b"\xc1"), "malformed"),
        (_frame(_body([1])), "malformed"),
        (_frame(_body({"a": 1})), "expected an array"),
        (_with(next_id=0), "bad next lease id"),
        (_with(next_id=2**63), "bad next lease id"),
        (_with(next_id="3"), "expected an int"),
        (_with(entries={}), "expected an array"),
        (_with(entries=[[1, 10]]), "malformed"),
        (_with(entries=[[0, 10, []]]), "bad lease id"),
        (_with(entries=[[1.0, 10, []]]), "expected an int"),
        (_with(entries=[[1, 10, []], [1, 10, []]]), "out of order or duplicated"),
        (_with(entries=[[2, 10, []], [1, 10, []]]), "out of order or duplicated"),
        (_with(entries=[[1, 0, []]]), "bad TTL"),
        (_with(entries=[[1, MAX_LEASE_TTL + 1, []]]), "bad TTL"),
        (_with(entries=[[1, True, []]]), "expected an int"),
        (_with(entries=[[1, 10, b"k"]]), "expected an array"),
        (_with(entries=[[1, 10, ["k"]]]), "expected bytes"),
        (_with(entries=[[1, 10, [b"b", b"a"]]]), "keys of lease 1 out of order"),
        (_with(entries=[[1, 10, [b"a", b"a"]]]), "keys of lease 1 out of order"),
        (_with(entries=[[1, 10, [b"a"]], [2, 10, [b"a"]]]), "attached to two leases"),
    ],
)
def test_bad_snapshots_are_refused_and_change_nothing(data: bytes, match: str) -> None:
    le = history(promoted=True)
    before = le.snapshot()
    expiry = le.expiry(1)
    with pytest.raises(SnapshotError, match=match) as e:
        le.restore(data)
    assert e.value.code == "bad_snapshot"
    assert isinstance(e.value, ValueError)
    assert le.snapshot() == before
    assert le.is_primary
    assert le.expiry(1) == expiry


def test_snapshot_must_be_bytes() -> None:
    with pytest.raises(SnapshotError):
        Lessor().restore("nope")  # type: ignore[arg-type]
    data: bytes = bytearray(GOOD)  # type: ignore[assignment]  # bytes-like is accepted
    assert Lessor.from_snapshot(data).leases() == [-4, 1, 9]
