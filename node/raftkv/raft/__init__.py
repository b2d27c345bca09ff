"""The Raft consensus core: a deterministic, sans-I/O state machine (see docs/raft-core-api.md)."""

from .confchange import decode_conf_change, encode_conf_change
from .config import Config
from .core import UnsafeConfChange
from .errors import (
    CompactionError,
    ConfChangeInProgress,
    InvalidConfChange,
    NoLeader,
    NotAMember,
    NotLeader,
    ProposalDropped,
    RaftError,
    TransferInProgress,
)
from .rawnode import RawNode, StorageMismatch
from .types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    Status,
)

__all__ = [
    "NONE",
    "CompactionError",
    "ConfChange",
    "ConfChangeInProgress",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "InvalidConfChange",
    "Message",
    "MessageType",
    "NoLeader",
    "NotAMember",
    "NotLeader",
    "ProposalDropped",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMetadata",
    "SoftState",
    "Status",
    "StorageMismatch",
    "TransferInProgress",
    "UnsafeConfChange",
    "decode_conf_change",
    "encode_conf_change",
]
