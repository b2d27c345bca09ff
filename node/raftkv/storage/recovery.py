"""Start-up: turn a data directory (WAL + snapshots) into what `RawNode.restart` needs.

Layout: `<data_dir>/wal/` and `<data_dir>/snap/`. The snapshot used is the newest intact
one that the WAL continues without a gap; a corrupt newest snapshot therefore falls back
to an older one, whose following entries the WAL still holds because segments are only
released below the oldest kept snapshot (`persist_snapshot`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from raftkv.raft.types import NONE, Entry, HardState, Snapshot, SnapshotMetadata
from raftkv.storage.errors import StorageInconsistentError
from raftkv.storage.snapshotter import DEFAULT_KEEP, SaveHook, Snapshotter
from raftkv.storage.wal import DEFAULT_SEGMENT_SIZE, WAL, FsyncHook

log = logging.getLogger(__name__)

WAL_DIR = "wal"
SNAP_DIR = "snap"


@dataclass(slots=True)
class RecoveredState:
    """The member's storage handles plus the state to restart the Raft core from."""

    wal: WAL
    snapshot: Snapshot | None
    hard_state: HardState
    entries: list[Entry]
    """Contiguous, starting right after the snapshot (or at 1 without one)."""
    snapshotter: Snapshotter

    def save_snapshot(self, snapshot: Snapshot) -> None:
        persist_snapshot(self.wal, self.snapshotter, snapshot)

    def close(self) -> None:
        self.wal.close()


def persist_snapshot(wal: WAL, snapshotter: Snapshotter, snapshot: Snapshot) -> None:
    """Store a snapshot (from `RawNode.compact` or from a leader) in the one safe order.

    The file goes first, then the WAL marker, and only then are WAL segments released
    -- and only below the *oldest* kept snapshot, so that any kept snapshot plus the WAL
    still rebuilds the log if a newer snapshot later turns out corrupt.
    """
    snapshotter.save(snapshot)
    wal.save_snapshot_marker(snapshot.metadata)
    wal.release_to(snapshotter.release_floor())


def open_storage(
    data_dir: str | os.PathLike[str],
    *,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    keep_snapshots: int = DEFAULT_KEEP,
    fsync: bool = True,
    on_fsync: FsyncHook | None = None,
    on_snapshot_save: SaveHook | None = None,
) -> RecoveredState:
    """Open (creating if needed) a member's storage and reconstruct its durable state.

    Raises WalCorruptError for a damaged WAL and StorageInconsistentError when no kept
    snapshot plus the WAL yields a gap-free log that reaches the commit index.
    """
    wal, replay = WAL.open(
        os.path.join(data_dir, WAL_DIR),
        segment_size=segment_size,
        fsync=fsync,
        on_fsync=on_fsync,
    )
    try:
        snapshotter = Snapshotter(
            os.path.join(data_dir, SNAP_DIR),
            keep=keep_snapshots,
            fsync=fsync,
            on_save=on_snapshot_save,
        )
        snapshot, entries = _choose_snapshot(snapshotter, replay.entries)
        hard_state = _normalise_hard_state(replay.hard_state, snapshot, entries)
        if snapshot is not None and snapshot.metadata not in replay.snapshots:
            # The marker was lost (crash after the snapshot file) or released with its
            # segment. Without it, replay would keep the discarded log, and the entries
            # the member appends after the snapshot would look like a gap next time.
            wal.save_snapshot_marker(snapshot.metadata)
    except BaseException:
        wal.close()
        raise
    return RecoveredState(wal, snapshot, hard_state, entries, snapshotter)


def _choose_snapshot(
    snapshotter: Snapshotter, entries: list[Entry]
) -> tuple[Snapshot | None, list[Entry]]:
    for snap in snapshotter.iter_newest_first():
        after = entries_after(snap.metadata, entries)
        if after is not None:
            return snap, after
        log.error(
            "snapshot at index %d unusable: the WAL resumes at index %d",
            snap.metadata.index,
            entries[0].index,
        )
    if entries and entries[0].index != 1:
        raise StorageInconsistentError(
            f"the WAL starts at index {entries[0].index} but no intact snapshot covers "
            "the entries before it"
        )
    return None, list(entries)


def entries_after(meta: SnapshotMetadata, entries: list[Entry]) -> list[Entry] | None:
    """The log following snapshot `meta`, or None when the WAL leaves a gap after it."""
    if not entries or entries[-1].index < meta.index:
        return []  # the snapshot supersedes the whole log
    first = entries[0].index
    if first <= meta.index:
        at = entries[meta.index - first]
        if at.term != meta.term:
            # §7: a log that disagrees with a snapshot at its last index is an uncommitted
            # branch (the snapshot is committed state); installing it discards the log.
            log.warning(
                "WAL entry %d has term %d but the snapshot says %d: discarding the log after it",
                meta.index,
                at.term,
                meta.term,
            )
            return []
        return entries[meta.index - first + 1 :]
    if first == meta.index + 1:
        return list(entries)
    return None


def _normalise_hard_state(
    hs: HardState, snapshot: Snapshot | None, entries: list[Entry]
) -> HardState:
    """Make the hard state agree with what else is durable.

    Entries are written before the hard state, and a snapshot before both, so a crash can
    leave a durable snapshot or entry from a term the durable hard state has not reached.
    Adopting that term with no vote is always safe (a member may always advance its term;
    the lost vote was never sent, since messages leave only after the sync). Likewise a
    snapshot is committed state, so commit can be raised to its index. A commit beyond the
    last surviving entry, though, means committed entries are gone: refuse to start.
    """
    snap_index = snapshot.metadata.index if snapshot is not None else 0
    snap_term = snapshot.metadata.term if snapshot is not None else 0
    last_index = entries[-1].index if entries else snap_index
    last_term = entries[-1].term if entries else snap_term
    term = max(hs.term, last_term)
    vote = hs.vote if term == hs.term else NONE
    commit = max(hs.commit, snap_index)
    if commit > last_index:
        raise StorageInconsistentError(
            f"hard state commits index {commit} but the log ends at {last_index}: "
            "committed entries were lost"
        )
    return HardState(term=term, vote=vote, commit=commit)
