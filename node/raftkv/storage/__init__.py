"""Durable storage for a raftkv member: the WAL and the snapshots.

`record` is the sans-I/O record codec, `replay` rebuilds the log from records, `wal` owns
segment files and group commit, `snapshotter` owns snapshot files, and `recovery` ties
them together at start-up (`open_storage`).
"""

from raftkv.storage.errors import (
    SnapshotCorruptError,
    StorageError,
    StorageInconsistentError,
    WalClosedError,
    WalCorruptError,
    WalFailedError,
    WalLockedError,
)
from raftkv.storage.recovery import RecoveredState, open_storage, persist_snapshot
from raftkv.storage.replay import Replay
from raftkv.storage.snapshotter import Snapshotter
from raftkv.storage.wal import WAL

__all__ = [
    "WAL",
    "RecoveredState",
    "Replay",
    "SnapshotCorruptError",
    "Snapshotter",
    "StorageError",
    "StorageInconsistentError",
    "WalClosedError",
    "WalCorruptError",
    "WalFailedError",
    "WalLockedError",
    "open_storage",
    "persist_snapshot",
]
