"""open_storage: the state a restarting member gets from its WAL and snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from raftkv.storage import (
    WAL,
    RecoveredState,
    StorageInconsistentError,
    open_storage,
)
from raftkv.storage.recovery import SNAP_DIR, WAL_DIR, entries_after
from raftkv.storage.snapshotter import snapshot_name

CS = ConfState(voters=(1, 2, 3))


def ents(first: int, last: int, term: int) -> list[Entry]:
    return [Entry(term, i, data=f"{term}/{i}".encode() * 8) for i in range(first, last + 1)]


def snapshot_at(index: int, term: int) -> Snapshot:
    return Snapshot(SnapshotMetadata(index, term, CS), f"kv-state-up-to-{index}".encode())


def reopen(d: Path, **kw: int) -> RecoveredState:
    return open_storage(d, fsync=False, **kw)  # type: ignore[arg-type]


def test_fresh_directory(tmp_path: Path) -> None:
    st = open_storage(tmp_path / "member")
    assert st.snapshot is None
    assert st.entries == []
    assert st.hard_state == HardState()
    st.wal.save(HardState(1, 1, 0), ents(1, 1, 1))
    st.close()
    st = open_storage(tmp_path / "member")
    assert st.entries == ents(1, 1, 1)
    assert st.hard_state == HardState(1, 1, 0)
    st.close()


def test_compaction_round_trip(tmp_path: Path) -> None:
    st = reopen(tmp_path)
    st.wal.save(HardState(1, 1, 10), ents(1, 10, 1))
    st.save_snapshot(snapshot_at(8, 1))
    st.wal.save(HardState(1, 1, 12), ents(11, 12, 1))
    st.close()
    st = reopen(tmp_path)
    assert st.snapshot == snapshot_at(8, 1)
    assert st.entries == ents(9, 12, 1)
    assert st.hard_state == HardState(1, 1, 12)
    st.close()


def test_corrupt_newest_snapshot_falls_back_to_previous_plus_wal(tmp_path: Path) -> None:
    """The WAL is released only below the oldest kept snapshot, so the previous snapshot
    still finds every entry after it."""
    st = open_storage(tmp_path, segment_size=512, keep_snapshots=2, fsync=False)
    last = 0
    for _ in range(6):
        st.wal.save(HardState(1, 1, last + 10), ents(last + 1, last + 10, 1))
        last += 10
        st.save_snapshot(snapshot_at(last - 2, 1))
    assert [m.index for m in st.snapshotter.list()] == [48, 58]
    first_kept = st.wal.segments[0]
    assert first_kept.seq > 1, "old segments must have been released"
    st.close()

    newest = tmp_path / SNAP_DIR / snapshot_name(58, 1)
    raw = bytearray(newest.read_bytes())
    raw[-3] ^= 0x55
    newest.write_bytes(bytes(raw))

    st = reopen(tmp_path)
    assert st.snapshot == snapshot_at(48, 1)
    assert st.entries == ents(49, 60, 1)
    assert st.hard_state.commit == 60
    st.close()


def test_keeping_one_snapshot_cannot_survive_its_corruption(tmp_path: Path) -> None:
    st = open_storage(tmp_path, segment_size=512, keep_snapshots=1, fsync=False)
    for i in range(1, 6):
        st.wal.save(HardState(1, 1, i * 10), ents(i * 10 - 9, i * 10, 1))
        st.save_snapshot(snapshot_at(i * 10 - 1, 1))
    st.close()
    (tmp_path / SNAP_DIR / snapshot_name(49, 1)).write_bytes(b"rotten")
    with pytest.raises(StorageInconsistentError, match="no intact snapshot"):
        reopen(tmp_path)
    # A failed open must release the WAL again.
    WAL.open(tmp_path / WAL_DIR)[0].close()


def test_installed_snapshot_replaces_conflicting_log(tmp_path: Path) -> None:
    st = reopen(tmp_path)
    st.wal.save(HardState(1, 0, 5), ents(1, 10, 1))
    st.save_snapshot(snapshot_at(8, 2))  # from a leader of term 2: entries 6.. were a dead branch
    st.close()
    st = reopen(tmp_path)
    assert st.snapshot == snapshot_at(8, 2)
    assert st.entries == []
    assert st.hard_state == HardState(term=2, vote=0, commit=8)
    st.wal.save(HardState(2, 0, 9), ents(9, 9, 2))
    st.close()
    st = reopen(tmp_path)
    assert st.entries == ents(9, 9, 2)
    st.close()


def test_snapshot_saved_but_marker_lost(tmp_path: Path) -> None:
    """Crash between the snapshot file and its WAL marker: the snapshot is still committed
    state, and the conflicting log suffix is discarded as installing it would."""
    st = reopen(tmp_path)
    st.wal.save(HardState(1, 3, 5), ents(1, 10, 1))
    st.snapshotter.save(snapshot_at(8, 2))
    st.close()
    st = reopen(tmp_path)
    assert st.snapshot == snapshot_at(8, 2)
    assert st.entries == []
    assert st.hard_state == HardState(2, 0, 8)  # term adopted, stale vote dropped
    st.close()


def test_torn_hard_state_is_caught_up_with_entries(tmp_path: Path) -> None:
    st = reopen(tmp_path)
    st.wal.save(HardState(1, 2, 3), ents(1, 3, 1))
    st.wal.save(None, ents(4, 4, 3))  # as if the matching hard state was torn off
    st.close()
    st = reopen(tmp_path)
    assert st.hard_state == HardState(3, 0, 3)
    st.close()


def test_commit_beyond_surviving_log_is_refused(tmp_path: Path) -> None:
    with WAL.open(tmp_path / WAL_DIR, fsync=False)[0] as wal:
        wal.save(HardState(1, 1, 9), ents(1, 5, 1))
    with pytest.raises(StorageInconsistentError, match="committed entries were lost"):
        reopen(tmp_path)


def test_wal_without_its_beginning_is_refused(tmp_path: Path) -> None:
    with WAL.open(tmp_path / WAL_DIR, fsync=False, segment_size=300)[0] as wal:
        for i in range(1, 20):
            wal.save(HardState(1, 1, i), ents(i, i, 1))
        wal.release_to(10)
    with pytest.raises(StorageInconsistentError, match="starts at index"):
        reopen(tmp_path)


def test_entries_after() -> None:
    log = ents(5, 9, 2)
    assert entries_after(SnapshotMetadata(7, 2), log) == ents(8, 9, 2)
    assert entries_after(SnapshotMetadata(4, 2), log) == log
    assert entries_after(SnapshotMetadata(3, 2), log) is None
    assert entries_after(SnapshotMetadata(12, 3), log) == []
    assert entries_after(SnapshotMetadata(9, 2), log) == []
    assert entries_after(SnapshotMetadata(7, 1), log) == []
    assert entries_after(SnapshotMetadata(7, 1), []) == []


def test_lost_marker_is_rewritten_so_later_appends_replay(tmp_path: Path) -> None:
    st = reopen(tmp_path)
    st.wal.save(HardState(1, 0, 5), ents(1, 10, 1))
    st.snapshotter.save(snapshot_at(20, 2))  # crash before the marker reached the WAL
    st.close()
    st = reopen(tmp_path)
    assert st.snapshot == snapshot_at(20, 2)
    assert st.entries == []
    st.wal.save(HardState(2, 0, 21), ents(21, 22, 2))
    st.close()
    st = reopen(tmp_path)
    assert st.snapshot == snapshot_at(20, 2)
    assert st.entries == ents(21, 22, 2)
    assert st.hard_state == HardState(2, 0, 21)
    st.close()
