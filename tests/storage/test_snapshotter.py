"""Snapshot files: atomic, checksummed, generations kept, corruption survived."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkv.raft.types import ConfState, Snapshot, SnapshotMetadata
from raftkv.storage import SnapshotCorruptError, Snapshotter
from raftkv.storage.snapshotter import (
    decode_snapshot_file,
    encode_snapshot_file,
    parse_snapshot_name,
    snapshot_name,
)


def snap(index: int, term: int = 1, data: bytes | None = None) -> Snapshot:
    meta = SnapshotMetadata(index, term, ConfState(voters=(1, 2, 3), learners=(4,)))
    return Snapshot(meta, data if data is not None else f"state@{index}".encode() * 10)


def test_save_load_and_list(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path / "snap")
    assert s.load_newest() is None
    assert s.list() == []
    assert s.release_floor() == 0
    s.save(snap(10))
    s.save(snap(20, 2))
    assert s.load_newest() == snap(20, 2)
    assert s.list() == [snap(10).metadata, snap(20, 2).metadata]
    assert s.release_floor() == 10


def test_keeps_only_newest_generations(tmp_path: Path) -> None:
    saved: list[float] = []
    s = Snapshotter(tmp_path, keep=2, on_save=saved.append)
    for i in (5, 10, 15, 20):
        s.save(snap(i))
    assert [m.index for m in s.list()] == [15, 20]
    assert s.release_floor() == 15
    assert len(saved) == 4
    assert sorted(os.listdir(tmp_path)) == [snapshot_name(15, 1), snapshot_name(20, 1)]


def test_corrupt_newest_falls_back_to_previous(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = Snapshotter(tmp_path)
    for i in (10, 20, 30):
        s.save(snap(i))
    newest = tmp_path / snapshot_name(30, 1)
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="raftkv.storage.snapshotter"):
        assert s.load_newest() == snap(20)
    assert "checksum" in caplog.text
    assert (tmp_path / (snapshot_name(30, 1) + ".broken")).exists()
    assert [m.index for m in s.list()] == [10, 20]


@pytest.mark.parametrize(
    "damage",
    ["truncate", "extend", "magic", "empty", "wrong-name"],
)
def test_every_kind_of_damage_is_detected(tmp_path: Path, damage: str) -> None:
    s = Snapshotter(tmp_path)
    s.save(snap(7))
    path = tmp_path / snapshot_name(7, 1)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[:-1])
    elif damage == "extend":
        path.write_bytes(raw + b"\0")
    elif damage == "magic":
        path.write_bytes(b"X" + raw[1:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.rename(tmp_path / snapshot_name(8, 1))
        path = tmp_path / snapshot_name(8, 1)
    with pytest.raises(SnapshotCorruptError) as info:
        s.load(path)
    assert str(path) in str(info.value)
    assert s.load_newest() is None


def test_malformed_metadata_is_corruption(tmp_path: Path) -> None:
    raw = bytearray(encode_snapshot_file(snap(3)))
    # Claim one more voter than the metadata holds, and fix up the checksum.
    import struct
    import zlib

    _magic, _crc, meta_len, data_len = struct.unpack_from("<8sIIQ", raw)
    raw[24 + 16] += 1
    body = bytes(raw[24:])
    crc = zlib.crc32(
        body[meta_len:],
        zlib.crc32(body[:meta_len], zlib.crc32(struct.pack("<IQ", meta_len, data_len))),
    )
    struct.pack_into("<I", raw, 8, crc)
    with pytest.raises(SnapshotCorruptError, match="malformed"):
        decode_snapshot_file(bytes(raw))
    p = tmp_path / snapshot_name(3, 1)
    p.write_bytes(bytes(raw))
    assert Snapshotter(tmp_path).list() == []


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path)
    s.save(snap(5))
    leftover = tmp_path / (snapshot_name(9, 1) + ".abc123.tmp")
    leftover.write_bytes(encode_snapshot_file(snap(9))[:50])
    s2 = Snapshotter(tmp_path)
    assert not leftover.exists()
    assert s2.load_newest() == snap(5)


def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Snapshotter(tmp_path)

    def broken(fd: int) -> None:
        raise OSError(28, "ENOSPC")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="ENOSPC"):
        s.save(snap(5))
    assert os.listdir(tmp_path) == []


def test_rejects_nonsense(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Snapshotter(tmp_path, keep=0)
    with pytest.raises(ValueError):
        Snapshotter(tmp_path).save(Snapshot())
    (tmp_path / "README").write_text("not a snapshot")
    (tmp_path / "0000000000000001-zzzzzzzzzzzzzzzz.snap").write_text("bad name")
    assert Snapshotter(tmp_path).files() == []
    assert parse_snapshot_name("1-2.snap") is None
    assert parse_snapshot_name(snapshot_name(3, 4)) == (3, 4)


def test_hook_failure_does_not_fail_save(tmp_path: Path) -> None:
    def boom(_: float) -> None:
        raise RuntimeError("metrics down")

    s = Snapshotter(tmp_path, on_save=boom, fsync=False)
    s.save(snap(1))
    assert s.load_newest() == snap(1)


u64 = st.integers(0, 2**64 - 1)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    index=st.integers(1, 2**64 - 1),
    term=u64,
    voters=st.lists(u64, max_size=7),
    learners=st.lists(u64, max_size=3),
    data=st.binary(max_size=2048),
)
def test_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    index: int,
    term: int,
    voters: list[int],
    learners: list[int],
    data: bytes,
) -> None:
    original = Snapshot(
        SnapshotMetadata(index, term, ConfState(tuple(voters), tuple(learners))), data
    )
    assert decode_snapshot_file(encode_snapshot_file(original)) == original
    s = Snapshotter(tmp_path_factory.mktemp("snap"), fsync=False)
    s.save(original)
    assert s.load_newest() == original
    assert s.list() == [original.metadata]
