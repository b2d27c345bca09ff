"""RawNode: the application's handle on the core, with the Ready/advance contract.

The application feeds inputs (`tick`, `step`, proposals) and repeatedly takes a `Ready`:
what to persist, send, install and apply. Nothing in a Ready is considered done until
`advance(ready)`; inputs may keep arriving between the two (the member persists a Ready
off the event loop while stepping new messages), and the next `ready()` hands out only
what the previous ones did not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .confchange import encode_conf_change
from .config import Config
from .core import Raft
from .errors import StorageMismatch
from .log import RaftLog
from .types import (
    LOCAL_MESSAGES,
    NONE,
    TERMLESS_MESSAGES,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    Role,
    Snapshot,
    SoftState,
    Status,
)

__all__ = ["RawNode", "StorageMismatch", "raft_hard_state"]


class RawNode:
    def __init__(self, raft: Raft) -> None:
        self.raft = raft
        self._prev_soft = SoftState(raft.lead, raft.role)
        self._prev_hard = raft_hard_state(raft)

    # --- construction ------------------------------------------------------------

    @classmethod
    def bootstrap(
        cls,
        cfg: Config,
        voters: Sequence[int],
        contexts: Mapping[int, bytes] | None = None,
    ) -> RawNode:
        """Start a brand-new cluster. Every initial member must call this with the same
        voters (and contexts), so that their logs start identical: entries 1..n are the
        ADD_NODE changes, committed by construction, at term 1."""
        if not voters or len(set(voters)) != len(voters) or any(v <= 0 for v in voters):
            raise ValueError(f"invalid initial voters {list(voters)}")
        if cfg.id not in voters:
            raise ValueError(f"member {cfg.id} is not among the initial voters")
        contexts = contexts or {}
        ents = [
            Entry(
                1,
                i + 1,
                EntryType.CONF_CHANGE,
                encode_conf_change(ConfChange(ConfChangeType.ADD_NODE, v, contexts.get(v, b""))),
            )
            for i, v in enumerate(sorted(voters))
        ]
        raft_log = RaftLog()
        raft_log.append(ents)
        raft = Raft(cfg, raft_log, HardState(term=1), ConfState())
        node = cls(raft)
        # Persist and hand out the bootstrap entries like any other: the hard state
        # differs from the "previous" empty one, so the first Ready carries it.
        node._prev_hard = HardState()
        raft.become_follower(1, NONE)
        raft.restore_commit(len(ents))
        return node

    @classmethod
    def join(cls, cfg: Config) -> RawNode:
        """A member with an empty log that waits for a leader to replicate to it. It
        cannot campaign (it is in no configuration) and so never starts a second
        cluster."""
        return cls(Raft(cfg, RaftLog(), HardState(), ConfState()))

    @classmethod
    def restart(
        cls,
        cfg: Config,
        hard_state: HardState,
        snapshot: Snapshot | None,
        entries: Iterable[Entry],
    ) -> RawNode:
        snap = snapshot if snapshot is not None and not snapshot.empty else None
        offset = snap.metadata.index if snap else 0
        offset_term = snap.metadata.term if snap else 0
        ents = [e for e in entries if e.index > offset]
        expected = offset + 1
        for e in ents:
            if e.index != expected:
                raise StorageMismatch(f"log has a gap: expected index {expected}, got {e.index}")
            expected += 1
        raft_log = RaftLog.recovered(offset, offset_term, ents)
        commit = max(hard_state.commit, offset)
        if commit > raft_log.last_index():
            raise StorageMismatch(
                f"hard state commit {commit} is beyond the last log index {raft_log.last_index()}"
            )
        cs = snap.metadata.conf_state if snap else ConfState()
        raft = Raft(cfg, raft_log, HardState(hard_state.term, hard_state.vote, offset), cs)
        if snap:
            raft.snapshot = snap
        node = cls(raft)
        # Membership is replayed from the committed entries; the application re-applies
        # those entries from `offset` on, as they come out of ready().
        raft.restore_commit(commit)
        node._prev_hard = raft_hard_state(raft)
        return node

    # --- inputs ------------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        self.raft.step(Message(MessageType.HUP, to=self.raft.id, sender=self.raft.id))

    def step(self, m: Message) -> None:
        """Feed a message from the network. Local message types and messages from
        members we cannot know about are ignored, never raised on: the wire is input."""
        if m.type in LOCAL_MESSAGES or m.to != self.raft.id:
            return
        if m.term == 0 and m.type not in TERMLESS_MESSAGES:
            # Only forwarded requests travel without a term; anything else claiming
            # term 0 would be taken as current-term and must not be believed.
            return
        self.raft.step(m)

    def propose(self, data: bytes) -> None:
        self.raft.propose([data])

    def propose_batch(self, datas: Sequence[bytes]) -> None:
        """Many proposals as one append: one message per follower, one fsync."""
        if datas:
            self.raft.propose(datas)

    def propose_conf_change(self, cc: ConfChange) -> None:
        self.raft.propose_conf_change(cc, encode_conf_change(cc))

    def read_index(self, ctx: bytes) -> None:
        self.raft.read_index(ctx)

    def transfer_leader(self, to: int) -> None:
        self.raft.transfer_leader(to)

    def report_unreachable(self, peer: int) -> None:
        self.raft.step(Message(MessageType.UNREACHABLE, to=self.raft.id, sender=peer))

    def report_snapshot(self, peer: int, ok: bool) -> None:
        self.raft.step(
            Message(MessageType.SNAP_STATUS, to=self.raft.id, sender=peer, reject=not ok)
        )

    def compact(self, index: int, data: bytes) -> Snapshot:
        return self.raft.compact(index, data)

    # --- outputs -----------------------------------------------------------------

    def has_ready(self) -> bool:
        r = self.raft
        lg = r.log
        return bool(
            r.msgs
            or r.read_states
            or r.dropped_proposals
            or (lg.pending_snapshot is not None and not lg.snapshot_in_progress)
            or lg.last_index() > lg.stable_in_progress
            or lg.has_next_committed()
            or SoftState(r.lead, r.role) != self._prev_soft
            or raft_hard_state(r) != self._prev_hard
        )

    def ready(self) -> Ready:
        r = self.raft
        lg = r.log
        rd = Ready()
        soft = SoftState(r.lead, r.role)
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        hard = raft_hard_state(r)
        prev = self._prev_hard
        if hard != prev:
            rd.hard_state = hard
            rd.vote_changed = hard.term != prev.term or hard.vote != prev.vote
            self._prev_hard = hard
        if lg.pending_snapshot is not None and not lg.snapshot_in_progress:
            rd.snapshot = lg.pending_snapshot
            lg.snapshot_in_progress = True
            lg.stable_in_progress = max(lg.stable_in_progress, rd.snapshot.metadata.index)
        rd.entries = lg.unstable_entries()
        if rd.entries:
            lg.stable_in_progress = rd.entries[-1].index
        rd.committed_entries = lg.next_committed(r.cfg.max_committed_per_ready)
        if rd.committed_entries:
            lg.applying = rd.committed_entries[-1].index
        rd.messages, r.msgs = r.msgs, []
        rd.read_states, r.read_states = r.read_states, []
        rd.dropped_proposals, r.dropped_proposals = r.dropped_proposals, []
        return rd

    def advance(self, rd: Ready) -> None:
        lg = self.raft.log
        if rd.snapshot is not None:
            lg.snapshot_persisted(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            lg.stable_to(last.index, last.term)
        self.raft.on_persisted()
        if rd.committed_entries:
            lg.applied_to(rd.committed_entries[-1].index)

    # --- observation -------------------------------------------------------------

    @property
    def id(self) -> int:
        return self.raft.id

    @property
    def role(self) -> Role:
        return self.raft.role

    @property
    def leader(self) -> int:
        return self.raft.lead

    @property
    def term(self) -> int:
        return self.raft.term

    @property
    def commit(self) -> int:
        return self.raft.log.committed

    @property
    def applied(self) -> int:
        return self.raft.log.applied

    @property
    def last_index(self) -> int:
        return self.raft.log.last_index()

    @property
    def first_index(self) -> int:
        return self.raft.log.first_index()

    @property
    def conf_state(self) -> ConfState:
        return self.raft.conf_state

    @property
    def hard_state(self) -> HardState:
        return raft_hard_state(self.raft)

    @property
    def snapshot(self) -> Snapshot:
        return self.raft.snapshot

    @property
    def stable_index(self) -> int:
        """The last log index known durable on this member's disk (advanced by
        `advance`). Committed entries up to it may be applied before the current
        Ready's own fsync: they are already on disk."""
        return self.raft.log.stable

    @property
    def pending_conf_index(self) -> int:
        """On a leader, the index of the latest configuration change it proposed (or
        of its first entry of the term, which must commit before any change): while the
        commit index is below it, a new change is refused (ConfChangeInProgress, one
        change at a time, thesis §4.1). 0 on a follower."""
        return self.raft.pending_conf_index if self.raft.role == Role.LEADER else 0

    def status(self) -> Status:
        r = self.raft
        progress = r.peer_progress() if r.role == Role.LEADER else {}
        return Status(
            id=r.id,
            role=r.role,
            leader=r.lead,
            term=r.term,
            vote=r.vote,
            commit=r.log.committed,
            applied=r.log.applied,
            last_index=r.log.last_index(),
            first_index=r.log.first_index(),
            snapshot_index=r.snapshot.metadata.index,
            conf_state=r.conf_state,
            progress=progress,
            lead_transferee=r.lead_transferee,
        )


def raft_hard_state(r: Raft) -> HardState:
    return HardState(r.term, r.vote, r.log.committed)
