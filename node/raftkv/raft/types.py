"""The records that cross the boundary of the Raft core.

They mirror etcd's raftpb: what the application persists (entries, hard state,
snapshots), what it ships between members (messages) and what it applies
(committed entries, read states). They are plain data: the core never does I/O,
so everything it wants done is described by one of these records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

NONE = 0
"""Member id 0 means "nobody": no leader, no vote."""


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on disk before a message that depends on it leaves (§5.1: term and vote
    survive crashes, or a member could vote twice in one term)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()

    def members(self) -> tuple[int, ...]:
        return tuple(sorted((*self.voters, *self.learners)))


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    data: bytes = b""

    @property
    def empty(self) -> bool:
        return self.metadata.index == 0


class ConfChangeType(IntEnum):
    ADD_NODE = 0
    """Add a voter, or promote an existing learner to voter."""
    ADD_LEARNER = 1
    REMOVE_NODE = 2


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: int
    context: bytes = b""
    """Opaque to the core; the member stores the peer URL and name here."""


class MessageType(IntEnum):
    """The numeric values go on the wire (see raftkv.wire): never renumber a member, and
    never reuse a retired value (2 was a local PROP, 21 a TRANSFER_LEADER; neither was
    ever produced: proposals and transfers enter through RawNode's methods)."""

    # Local messages: never sent over the network.
    HUP = 0
    BEAT = 1
    CHECK_QUORUM = 3
    UNREACHABLE = 4
    SNAP_STATUS = 5
    # Network messages.
    APP = 10
    APP_RESP = 11
    VOTE = 12
    VOTE_RESP = 13
    PRE_VOTE = 14
    PRE_VOTE_RESP = 15
    SNAP = 16
    HEARTBEAT = 17
    HEARTBEAT_RESP = 18
    READ_INDEX = 19
    READ_INDEX_RESP = 20
    TIMEOUT_NOW = 22
    PROP_FORWARD = 23
    """A follower forwarding client proposals to the leader (etcd reuses MsgProp)."""


LOCAL_MESSAGES = frozenset(
    {
        MessageType.HUP,
        MessageType.BEAT,
        MessageType.CHECK_QUORUM,
        MessageType.UNREACHABLE,
        MessageType.SNAP_STATUS,
    }
)
"""Inputs the core makes for itself (ticks, reports from the transport); RawNode.step
drops them when they arrive from the network, and the wire refuses to encode them."""

TERMLESS_MESSAGES = frozenset({MessageType.PROP_FORWARD, MessageType.READ_INDEX})
"""Forwarded requests carry term 0 so that they are never mistaken for a sign of a
newer or older term (etcd does the same with MsgProp and MsgReadIndex). Anything else
claiming term 0 is not believed."""


@dataclass(slots=True)
class Message:
    type: MessageType
    to: int
    sender: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the application may want to observe; never persisted."""

    leader: int = NONE
    role: Role = Role.FOLLOWER


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the local applied index reaches `index`."""

    index: int
    request_ctx: bytes


@dataclass(slots=True)
class Ready:
    """Everything the application must do, in order, before calling `advance(ready)`:

    1. persist `snapshot` (if any), then `entries` and `hard_state` (fsync);
    2. send `messages`;
    3. install `snapshot` into the state machine (if any), then apply
       `committed_entries` in order;
    4. serve `read_states` once applied >= their index.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    dropped_proposals: list[bytes] = field(default_factory=list)
    """Data of proposals this member had forwarded and the leader refused: fail them now
    rather than let the client wait for a timeout."""
    vote_changed: bool = False
    """Whether `hard_state` changed term or vote (not only commit)."""

    @property
    def must_sync(self) -> bool:
        """Whether step 1 must reach the disk before anything that depends on it.

        As in etcd/raft's MustSync: entries, a snapshot, a new term or vote must be
        durable first (§5.1, or a member could vote twice in a term or forget entries it
        acknowledged). A hard state whose only change is the commit index need not be:
        the commit index is recomputed from a quorum after a crash, so losing the latest
        one only delays re-applying entries, never un-commits them. Writing it without
        waiting for an fsync saves one fsync per write on the leader.

        Except when a configuration change is among the committed entries: membership
        takes effect at commit, and the world acts on it (an operator deletes a removed
        member's pod), so the commit that covers it must survive a crash of every
        member; an fsync (of whatever is queued) comes first.
        """
        return (
            bool(self.entries)
            or self.vote_changed
            or self.snapshot is not None
            or any(e.type == EntryType.CONF_CHANGE for e in self.committed_entries)
        )


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class PeerProgress:
    match: int
    next: int
    state: ProgressState
    learner: bool
    recent_active: bool


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    role: Role
    leader: int
    term: int
    vote: int
    commit: int
    applied: int
    last_index: int
    first_index: int
    snapshot_index: int
    conf_state: ConfState
    progress: dict[int, PeerProgress]
    lead_transferee: int
