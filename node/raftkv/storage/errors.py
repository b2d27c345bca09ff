"""Typed storage failures.

Durable storage must fail loudly: a member that silently starts with a shorter log than
it acknowledged can break Raft's safety (an acknowledged vote or entry that vanishes).
Every condition that could mean lost acknowledged data is one of these types, with a
stable `code` the member maps to its status/health reporting in one place.
"""

from __future__ import annotations

import os


class StorageError(Exception):
    """Base of every error raised by `raftkv.storage`."""

    code = "storage_error"


class WalCorruptError(StorageError):
    """A WAL record before the tail is unreadable: refusing to drop data that may be
    committed. The message names the file and byte offset so an operator can inspect it."""

    code = "wal_corrupt"

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"corrupt WAL record in {self.path} at byte offset {offset}: {reason}")


class WalLockedError(StorageError):
    """Another WAL handle (this process or another) owns the directory; two writers would
    interleave records and corrupt the log."""

    code = "wal_locked"


class WalClosedError(StorageError):
    code = "wal_closed"


class WalFailedError(StorageError):
    """A write or fdatasync failed earlier. After a failed fsync the kernel may have
    dropped dirty pages and cleared the error ("fsyncgate"), so nothing written since the
    last successful sync can be trusted: the handle refuses all further work and the
    member must restart (re-opening repairs the tail)."""

    code = "wal_failed"


class SnapshotCorruptError(StorageError):
    code = "snapshot_corrupt"

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"corrupt snapshot {self.path}: {reason}")


class StorageInconsistentError(StorageError):
    """The WAL and the snapshots on disk do not describe one log (a gap, or a commit index
    beyond what survives). Starting anyway would forget committed entries."""

    code = "storage_inconsistent"
