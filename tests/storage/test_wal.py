"""WAL behaviour through its public API, with real files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkv.raft.types import Entry, HardState, SnapshotMetadata
from raftkv.storage import (
    WAL,
    WalClosedError,
    WalCorruptError,
    WalFailedError,
    WalLockedError,
)
from raftkv.storage.record import Record, decode_at
from raftkv.storage.wal import parse_segment_name, segment_name


def ents(first: int, last: int, term: int, size: int = 8) -> list[Entry]:
    return [
        Entry(term, i, data=f"{term}:{i}:".encode().ljust(size, b"."))
        for i in range(first, last + 1)
    ]


def records(path: str | Path) -> list[Record]:
    data = Path(path).read_bytes()
    seq = parse_segment_name(Path(path).name)
    assert seq is not None
    out, pos = [], 0
    while pos < len(data):
        rec = decode_at(data, pos, segment_seq=seq)
        out.append(rec)
        pos = rec.end
    return out


def segment_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix == ".wal")


def test_append_reopen_round_trip(tmp_path: Path) -> None:
    wal, replay = WAL.open(tmp_path / "wal")
    assert replay.entries == []
    assert replay.hard_state == HardState()
    wal.save(HardState(1, 1, 0), ents(1, 3, 1))
    wal.save(HardState(1, 1, 3), ents(4, 5, 1))
    wal.save(None, [])
    wal.close()
    wal, replay = WAL.open(tmp_path / "wal")
    assert replay.entries == ents(1, 5, 1)
    assert replay.hard_state == HardState(1, 1, 3)
    wal.close()


def test_overwrite_by_later_leader(tmp_path: Path) -> None:
    with WAL.open(tmp_path)[0] as wal:
        wal.save(HardState(1, 0, 0), ents(1, 10, 1))
        wal.save(HardState(2, 0, 0), ents(6, 8, 2))
    wal, replay = WAL.open(tmp_path)
    assert replay.entries == ents(1, 5, 1) + ents(6, 8, 2)
    assert replay.hard_state.term == 2
    wal.close()


def test_hard_state_last_wins_across_segments(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=200)
    for t in range(1, 20):
        wal.save(HardState(t, t % 3, t - 1), ents(t, t, t, size=40))
    assert len(wal.segments) > 3
    wal.close()
    wal, replay = WAL.open(tmp_path)
    assert replay.hard_state == HardState(19, 1, 18)
    wal.close()


def test_rotation_release_and_hard_state_survives(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=300)
    wal.save(HardState(7, 3, 0), [])
    for i in range(1, 41):
        wal.save(None, ents(i, i, 7, size=50))
    segs = wal.segments
    assert len(segs) >= 5
    assert all(s.max_index > 0 for s in segs[1:])
    cut = segs[2].max_index + 1
    wal.release_to(cut)
    left = wal.segments
    assert left[0].seq == segs[3].seq
    assert [p.name for p in segment_files(tmp_path)] == [segment_name(s.seq) for s in left]
    wal.release_to(10**9)  # never the active segment
    assert len(wal.segments) == 1
    wal.close()
    wal, replay = WAL.open(tmp_path)
    assert replay.hard_state == HardState(7, 3, 0)
    assert (
        replay.entries
        == [e for i in range(1, 41) for e in ents(i, i, 7, 50)][-len(replay.entries) :]
    )
    assert replay.entries[-1].index == 40
    wal.close()


def test_release_keeps_segments_that_overwrite_later_ones(tmp_path: Path) -> None:
    """Only a prefix may go: dropping an old segment that a newer one partly overwrites
    would resurrect the overwritten suffix."""
    wal, _ = WAL.open(tmp_path, segment_size=250)
    for i in range(1, 11):
        wal.save(None, ents(i, i, 1, size=60))
    wal.save(None, ents(4, 4, 2, size=60))
    wal.release_to(8)
    wal.close()
    wal, replay = WAL.open(tmp_path)
    assert replay.entries[-1] == ents(4, 4, 2, 60)[0]
    wal.close()


def test_snapshot_markers_are_replayed(tmp_path: Path) -> None:
    with WAL.open(tmp_path)[0] as wal:
        wal.save(None, ents(1, 5, 1))
        wal.save_snapshot_marker(SnapshotMetadata(3, 1))
        wal.save_snapshot_marker(SnapshotMetadata(20, 2))
        wal.save(None, ents(21, 22, 2))
    wal, replay = WAL.open(tmp_path)
    assert replay.snapshots == [SnapshotMetadata(3, 1), SnapshotMetadata(20, 2)]
    assert replay.entries == ents(21, 22, 2)
    wal.close()


def test_corrupt_earlier_record_is_a_hard_error_naming_file_and_offset(tmp_path: Path) -> None:
    with WAL.open(tmp_path)[0] as wal:
        for i in range(1, 6):
            wal.save(HardState(1, 0, i - 1), ents(i, i, 1))
    seg = segment_files(tmp_path)[0]
    victim = next(r for r in records(seg) if isinstance(r.body, Entry) and r.body.index == 2)
    data = bytearray(seg.read_bytes())
    data[victim.offset + victim.size // 2] ^= 0x01
    seg.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError) as info:
        WAL.open(tmp_path)
    err = info.value
    assert err.path == str(seg)
    assert err.offset == victim.offset
    assert str(seg) in str(err)
    assert f"offset {victim.offset}" in str(err)
    WAL.open(tmp_path / "elsewhere")[0].close()  # the lock was released by the failed open
    with pytest.raises(WalCorruptError):
        WAL.open(tmp_path)


def test_damage_in_an_older_segment_is_never_a_torn_tail(tmp_path: Path) -> None:
    with WAL.open(tmp_path, segment_size=200)[0] as wal:
        for i in range(1, 10):
            wal.save(None, ents(i, i, 1, size=60))
    first = segment_files(tmp_path)[0]
    size = first.stat().st_size
    os.truncate(first, size - 3)
    with pytest.raises(WalCorruptError) as info:
        WAL.open(tmp_path)
    assert info.value.path == str(first)


def test_missing_segment_is_detected(tmp_path: Path) -> None:
    with WAL.open(tmp_path, segment_size=200)[0] as wal:
        for i in range(1, 10):
            wal.save(None, ents(i, i, 1, size=60))
    files = segment_files(tmp_path)
    files[1].unlink()
    with pytest.raises(WalCorruptError, match="missing"):
        WAL.open(tmp_path)


def test_log_gap_is_a_hard_error(tmp_path: Path) -> None:
    with WAL.open(tmp_path)[0] as wal:
        wal.save(None, ents(1, 3, 1))
        wal.save(None, ents(5, 5, 1))
    with pytest.raises(WalCorruptError, match="does not follow"):
        WAL.open(tmp_path)


def test_torn_tail_is_truncated_logged_and_appends_continue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with WAL.open(tmp_path)[0] as wal:
        wal.save(HardState(1, 0, 0), ents(1, 3, 1))
        wal.save(HardState(1, 0, 3), ents(4, 6, 1))
    seg = segment_files(tmp_path)[0]
    full = seg.stat().st_size
    os.truncate(seg, full - 5)
    with open(seg, "ab") as f:
        f.write(b"\x00\xff" * 11)  # garbage where the sector was torn
    with caplog.at_level(logging.WARNING, logger="raftkv.storage.wal"):
        wal, replay = WAL.open(tmp_path)
    assert "torn tail" in caplog.text
    assert replay.entries == ents(1, 6, 1)  # the hard state record was the torn one
    assert replay.hard_state == HardState(1, 0, 0)
    wal.save(HardState(1, 0, 7), ents(7, 8, 1))
    wal.close()
    wal, replay = WAL.open(tmp_path)
    assert replay.entries == ents(1, 8, 1)
    assert replay.hard_state == HardState(1, 0, 7)
    wal.close()


def test_empty_newest_segment_gets_a_hard_state_header(tmp_path: Path) -> None:
    with WAL.open(tmp_path)[0] as wal:
        wal.save(HardState(4, 2, 0), ents(1, 2, 4))
    (tmp_path / segment_name(2)).write_bytes(b"")  # crash right after creating it
    wal, replay = WAL.open(tmp_path)
    wal.save(None, ents(3, 3, 4))
    wal.release_to(10)
    assert [s.seq for s in wal.segments] == [2]
    wal.close()
    wal, replay = WAL.open(tmp_path)
    assert replay.hard_state == HardState(4, 2, 0)
    assert replay.entries == ents(3, 3, 4)
    wal.close()


def test_directory_is_locked(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    with pytest.raises(WalLockedError):
        WAL.open(tmp_path)
    wal.close()
    wal.close()  # idempotent
    with pytest.raises(WalClosedError):
        wal.save(None, ents(1, 1, 1))
    WAL.open(tmp_path)[0].close()


def test_failed_fsync_poisons_the_handle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = WAL.open(tmp_path)
    wal.save(None, ents(1, 1, 1))

    def broken(fd: int) -> None:
        raise OSError(5, "EIO")

    monkeypatch.setattr(os, "fdatasync", broken)
    with pytest.raises(WalFailedError, match="EIO"):
        wal.save(None, ents(2, 2, 1))
    monkeypatch.undo()
    with pytest.raises(WalFailedError):
        wal.save(None, ents(2, 2, 1))
    with pytest.raises(WalFailedError):
        wal.release_to(5)
    wal.close()
    wal, replay = WAL.open(tmp_path)
    assert replay.entries[0] == ents(1, 1, 1)[0]
    wal.close()


def test_on_fsync_hook_and_counters(tmp_path: Path) -> None:
    seen: list[float] = []
    wal, _ = WAL.open(tmp_path, on_fsync=seen.append)
    base = wal.fsync_count
    wal.save(HardState(1, 0, 0), ents(1, 4, 1))
    assert wal.fsync_count == base + 1
    assert wal.group_count == 1
    assert len(seen) == wal.fsync_count
    assert all(s >= 0 for s in seen)
    wal.close()

    def explode(_: float) -> None:
        raise RuntimeError("metrics down")

    wal, _ = WAL.open(tmp_path, on_fsync=explode)
    wal.save(None, ents(5, 5, 1))  # a broken metrics hook must not fail the write
    wal.close()

    wal, _ = WAL.open(tmp_path, fsync=False)
    wal.save(None, ents(6, 6, 1))
    assert wal.fsync_count == 0
    wal.close()
    with pytest.raises(ValueError):
        WAL.open(tmp_path, segment_size=0)


def test_segment_names() -> None:
    assert parse_segment_name(segment_name(42)) == 42
    assert parse_segment_name("LOCK") is None
    assert parse_segment_name("zzzzzzzzzzzzzzzz.wal") is None
    assert parse_segment_name("1.wal") is None


@st.composite
def histories(draw: st.DrawFn) -> list[list[Entry]]:
    """Raft-like write histories: appends, and overwrites of a suffix by a higher term."""
    saves: list[list[Entry]] = []
    last, term = 0, 1
    for _ in range(draw(st.integers(1, 25))):
        if last and draw(st.booleans()) and draw(st.booleans()):
            start = draw(st.integers(max(1, last - 5), last))
            term += 1
        else:
            start = last + 1
        n = draw(st.integers(1, 4))
        size = draw(st.integers(0, 90))
        saves.append(ents(start, start + n - 1, term, size))
        last = start + n - 1
    return saves


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(histories(), st.integers(0, 120), st.integers(150, 600))
def test_release_then_replay_is_a_suffix_of_the_full_log(
    tmp_path_factory: pytest.TempPathFactory, saves: list[list[Entry]], floor: int, seg_size: int
) -> None:
    d = tmp_path_factory.mktemp("wal")
    model: list[Entry] = []
    wal, _ = WAL.open(d, segment_size=seg_size, fsync=False)
    for batch in saves:
        wal.save(None, batch)
        model = [e for e in model if e.index < batch[0].index] + batch
    wal.release_to(floor)
    wal.close()
    wal, replay = WAL.open(d, fsync=False)
    wal.close()
    got = replay.entries
    assert got, "the active segment is never released"
    assert got == model[len(model) - len(got) :]
    assert got[0].index <= max(floor, model[0].index)
