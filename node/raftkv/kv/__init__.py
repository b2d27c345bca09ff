"""The key-value state machine that Raft replicates: commands, their codec, the store.

Pure (no I/O): the node loop decodes committed entries into `Command`s, applies them
with `KVStore.apply`, and hands `KVStore.snapshot_view().serialize()` to the Raft core
when it compacts.
"""

from .command import (
    FORMAT_VERSION,
    MAX_REQUEST_ID_LEN,
    Command,
    CommandDecodeError,
    CommandError,
    Op,
)
from .store import (
    DEFAULT_DEDUP_CAPACITY,
    ApplyError,
    ApplyOrderError,
    ApplyResult,
    KVStore,
    SnapshotError,
    SnapshotView,
)

__all__ = [
    "DEFAULT_DEDUP_CAPACITY",
    "FORMAT_VERSION",
    "MAX_REQUEST_ID_LEN",
    "ApplyError",
    "ApplyOrderError",
    "ApplyResult",
    "Command",
    "CommandDecodeError",
    "CommandError",
    "KVStore",
    "Op",
    "SnapshotError",
    "SnapshotView",
]
