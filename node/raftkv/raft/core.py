"""The Raft protocol: elections, replication, ReadIndex, leader transfer and membership.

A close port of etcd-io/raft's raft.go, reduced to single-server membership changes.
Section numbers refer to the Raft paper (§) and Ongaro's thesis. The class does no I/O:
it reacts to `step`, `tick` and the proposal calls by queueing messages and changing
its in-memory state; `RawNode` turns that into Ready batches.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from . import quorum
from .confchange import apply_conf_change, decode_conf_change, validate_conf_change
from .config import Config
from .errors import (
    CompactionError,
    ConfChangeInProgress,
    InvalidConfChange,
    NoLeader,
    NotAMember,
    NotLeader,
    ProposalDropped,
    TransferInProgress,
    UnsafeConfChange,
)
from .log import RaftLog
from .progress import Progress
from .quorum import VoteResult
from .readonly import ReadOnly
from .tracker import ProgressTracker
from .types import (
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
    PeerProgress,
    ProgressState,
    ReadState,
    Role,
    Snapshot,
    SnapshotMetadata,
)

__all__ = ["CAMPAIGN_TRANSFER", "Raft", "UnsafeConfChange"]

log = logging.getLogger("raftkv.raft")

CAMPAIGN_TRANSFER = b"transfer"
"""Vote context of an election started by TimeoutNow: voters skip the lease check,
because the old leader asked for this election."""

MT = MessageType
_VOTE_TYPES = (MT.VOTE, MT.PRE_VOTE)
_RESPONSE_TERM_EXPLICIT = frozenset({MT.VOTE, MT.VOTE_RESP, MT.PRE_VOTE, MT.PRE_VOTE_RESP})


class Raft:
    def __init__(self, cfg: Config, raft_log: RaftLog, hs: HardState, cs: ConfState) -> None:
        cfg.validate()
        self.cfg = cfg
        self.id = cfg.id
        self.log = raft_log
        self.term = hs.term
        self.vote = hs.vote
        self.role = Role.FOLLOWER
        self.lead = NONE
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.removing_self = False
        self.tracker = ProgressTracker(cs, cfg.max_inflight_msgs, cfg.election_tick)
        """Configuration, per-member progress, activity and votes."""
        self.base_conf_state = cs
        """The configuration as of the log's compaction point (the snapshot)."""
        self.conf_history: list[tuple[int, ConfState]] = []
        """(index, configuration after it) for changes newer than the snapshot, so that a
        snapshot at any applied index records the membership as of that index."""
        self.snapshot = Snapshot()
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.dropped_proposals: list[bytes] = []
        self.read_only = ReadOnly()
        self.pending_reads: list[Message] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.now = 0
        # The member id is mixed in: members configured with one shared seed must
        # still draw different election timeouts, or they split votes forever.
        self.rng = random.Random(f"{cfg.seed}/{cfg.id}")
        self.randomized_election_timeout = cfg.election_tick
        self._rebuild_progress()
        self.become_follower(self.term, NONE)

    # --- configuration -----------------------------------------------------------

    @property
    def conf_state(self) -> ConfState:
        """The configuration in force (it takes effect at commit; see
        _apply_committed_conf_changes)."""
        return self.tracker.conf

    @property
    def prs(self) -> dict[int, Progress]:
        """The tracker's progress map (etcd's old `r.prs`), read-only by convention."""
        return self.tracker.progress

    def promotable(self) -> bool:
        return self.id in self.conf_state.voters

    def _voters(self) -> tuple[int, ...]:
        return self.conf_state.voters

    def _quorum(self) -> int:
        """Size of a quorum of the current voters. Unused by the core itself (the
        tracker asks quorum.py); tests/sim/test_mutations.py writes its Figure 8 bug
        against it."""
        return quorum.majority(len(self._voters()))

    def _rebuild_progress(self) -> None:
        self.tracker.reset(
            self.tracker.conf, self.log.last_index(), self.id, self.log.stable, self.now
        )

    def conf_state_at(self, index: int) -> ConfState:
        cs = self.base_conf_state
        for idx, state in self.conf_history:
            if idx > index:
                break
            cs = state
        return cs

    def _apply_committed_conf_changes(self, old_commit: int, new_commit: int) -> None:
        """Membership takes effect when its entry commits (rather than when the
        application applies it), so the core never depends on application timing and a
        restart recovers it from the hard state alone."""
        if old_commit >= new_commit:
            return
        first = max(old_commit + 1, self.log.first_index())
        for e in self.log.entries_between(first, new_commit + 1):
            if e.type == EntryType.CONF_CHANGE:
                self._apply_conf_change_entry(e)

    def _apply_conf_change_entry(self, e: Entry) -> None:
        try:
            cc = decode_conf_change(e.data)
        except InvalidConfChange:
            log.error("member %d: undecodable conf change at index %d ignored", self.id, e.index)
            return
        old = self.conf_state
        new = apply_conf_change(old, cc)
        self.conf_history.append((e.index, new))
        if new == old:
            return
        self.tracker.apply_conf(new, self.log.last_index(), self.now)
        if self.lead_transferee != NONE and self.lead_transferee not in new.voters:
            self.lead_transferee = NONE
        log.info(
            "member %d: applied %s %d at index %d: voters=%s learners=%s",
            self.id,
            cc.type.name,
            cc.node_id,
            e.index,
            list(new.voters),
            list(new.learners),
        )
        if self.role != Role.LEADER:
            return
        if self.id not in new.voters:
            self._step_down_removed()
            return
        # A smaller quorum may commit more now; new members need entries.
        if self._maybe_commit():
            self._bcast_append()
        else:
            for mid in self.tracker.peers(self.id):
                self._maybe_send_append(mid, send_if_empty=False)

    def _step_down_removed(self) -> None:
        """A leader removed from the configuration tells the others the removal is
        committed, hands leadership to the most up-to-date voter if one is fully caught
        up (thesis §4.2.2), and steps down."""
        self._bcast_append()
        best, best_match = self.tracker.most_up_to_date_voter()
        if best != NONE and best_match == self.log.last_index():
            self._send(Message(MT.TIMEOUT_NOW, to=best, sender=self.id))
        log.info("member %d: removed from the configuration, stepping down", self.id)
        self.become_follower(self.term, NONE)

    # --- role transitions --------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
            # Messages queued in an older term are stale, and an ack among them may
            # vouch for entries a newer leader has just overwritten before they were
            # persisted. Forwarded requests (term 0) stay.
            self.msgs = [m for m in self.msgs if m.term == 0 or m.term >= term]
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.cfg.election_tick + self.rng.randrange(
            self.cfg.election_tick
        )
        self.lead_transferee = NONE
        self.tracker.reset_votes()
        self.pending_conf_index = 0
        self.removing_self = False
        self.read_only = ReadOnly()
        self.pending_reads = []
        self._rebuild_progress()

    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.lead = lead

    def become_pre_candidate(self) -> None:
        # Deliberately leaves term and vote alone: that is the point of PreVote.
        self.role = Role.PRE_CANDIDATE
        self.tracker.reset_votes()
        self.lead = NONE
        # A fresh timeout, so that pre-candidates whose rounds failed do not retry in
        # lockstep forever.
        self.randomized_election_timeout = self.cfg.election_tick + self.rng.randrange(
            self.cfg.election_tick
        )

    def become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        pr = self.tracker.get(self.id)
        assert pr is not None, "only a voter campaigns, and so only a voter leads"
        pr.become_replicate()
        # §5.4.2 / thesis §6.4: an empty entry of the new term lets the leader commit,
        # and so learn the commit index, without waiting for a client write.
        self._append_entries([Entry(self.term, 0)])
        # No configuration change until that entry commits (Ongaro's fix for
        # single-server changes across leader changes).
        self.pending_conf_index = self.log.last_index()
        # Re-elected while our own removal is still uncommitted in the log: we are
        # still on our way out and must refuse new proposals, or the remaining
        # members can end up with logs none of them can win an election with.
        self.removing_self = self._removal_pending()
        log.info("member %d: became leader at term %d", self.id, self.term)

    # --- ticks -------------------------------------------------------------------

    def tick(self) -> None:
        self.now += 1
        if self.role == Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(MT.HUP, to=self.id, sender=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, to=self.id, sender=self.id))
            if self.role == Role.LEADER and self.lead_transferee != NONE:
                log.info(
                    "member %d: leader transfer to %d timed out", self.id, self.lead_transferee
                )
                self.lead_transferee = NONE
        if self.role != Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, to=self.id, sender=self.id))

    def _quorum_active(self) -> bool:
        return self.tracker.quorum_active(self.id, self.now)

    # --- elections ---------------------------------------------------------------

    def _hup(self, transfer: bool) -> None:
        if self.role == Role.LEADER or not self.promotable():
            return
        if self.cfg.pre_vote and not transfer:
            self._campaign(MT.PRE_VOTE, transfer=False)
        else:
            self._campaign(MT.VOTE, transfer=transfer)

    def _campaign(self, vote_type: MessageType, transfer: bool) -> None:
        if vote_type == MT.PRE_VOTE:
            self.become_pre_candidate()
            term = self.term + 1  # the term we would campaign in, not adopted yet
        else:
            self.become_candidate()
            term = self.term
        resp_type = MT.PRE_VOTE_RESP if vote_type == MT.PRE_VOTE else MT.VOTE_RESP
        if self._poll(self.id, resp_type, True) == VoteResult.WON:
            # A single-voter cluster wins at once.
            if vote_type == MT.PRE_VOTE:
                self._campaign(MT.VOTE, transfer=False)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        for mid in self._voters():
            if mid == self.id:
                continue
            self._send(
                Message(
                    vote_type,
                    to=mid,
                    sender=self.id,
                    term=term,
                    index=self.log.last_index(),
                    log_term=self.log.last_term(),
                    context=ctx,
                )
            )

    def _poll(self, sender: int, resp_type: MessageType, granted: bool) -> VoteResult:
        """Record a vote and tally. Only voters of our configuration count, so a
        learner's answer never elects anyone."""
        self.tracker.record_vote(sender, granted)
        return self.tracker.vote_result()

    # --- sending -----------------------------------------------------------------

    def _send(self, m: Message) -> None:
        if m.type in _RESPONSE_TERM_EXPLICIT:
            assert m.term != 0, "vote messages carry an explicit term"
        elif m.type in TERMLESS_MESSAGES:
            m.term = 0
        else:
            m.term = self.term
        self.msgs.append(m)

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        if self.role != Role.LEADER:
            return False  # e.g. we stepped down while applying our own removal
        pr = self.tracker.get(to)
        if pr is None or pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        if prev_term is None:
            return self._send_snapshot(to, pr)
        ents = self.log.entries_between(
            pr.next, self.log.last_index() + 1, self.cfg.max_size_per_msg
        )
        if not ents and not send_if_empty:
            return False
        self._send(
            Message(
                MT.APP,
                to=to,
                sender=self.id,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(ents),
                commit=self.log.committed,
            )
        )
        pr.sent_entries(ents[-1].index if ents else None)
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not self.tracker.is_active(pr, self.now):
            # Do not ship a whole snapshot to a member that may be down.
            return False
        snap = self.snapshot
        if snap.empty:
            log.error("member %d: follower %d needs a snapshot but none exists", self.id, to)
            return False
        self._send(Message(MT.SNAP, to=to, sender=self.id, snapshot=snap))
        pr.become_snapshot(snap.metadata.index)
        log.info("member %d: sending snapshot at %d to %d", self.id, snap.metadata.index, to)
        return True

    def _bcast_append(self) -> None:
        for mid in self.tracker.peers(self.id):
            self._maybe_send_append(mid, send_if_empty=True)

    def _bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self.read_only.last_pending_ctx()
        for mid in self.tracker.peers(self.id):
            pr = self.tracker.progress[mid]
            # Never tell a follower to commit beyond what it is known to have.
            commit = min(pr.match, self.log.committed)
            self._send(Message(MT.HEARTBEAT, to=mid, sender=self.id, commit=commit, context=ctx))

    def _send_timeout_now(self, to: int) -> None:
        self._send(Message(MT.TIMEOUT_NOW, to=to, sender=self.id))

    # --- leader bookkeeping ------------------------------------------------------

    def _append_entries(self, ents: Sequence[Entry]) -> None:
        li = self.log.last_index()
        stamped = [Entry(self.term, li + 1 + i, e.type, e.data) for i, e in enumerate(ents)]
        self.log.append(stamped)
        # The leader's own copy counts toward a quorum only once it is on disk (see
        # on_persisted): then it may replicate before its own fsync (thesis §10.2.1)
        # and a commit never rests on an entry the leader could still lose.

    def on_persisted(self) -> None:
        """The application made our log durable up to `log.stable`."""
        if self.role != Role.LEADER:
            return
        pr = self.tracker.get(self.id)
        if pr is not None and pr.maybe_update(self.log.stable) and self._maybe_commit():
            self._bcast_append()

    def _removal_pending(self) -> bool:
        for e in self.log.uncommitted_entries():
            if e.type != EntryType.CONF_CHANGE:
                continue
            try:
                cc = decode_conf_change(e.data)
            except InvalidConfChange:
                continue
            if cc.type == ConfChangeType.REMOVE_NODE and cc.node_id == self.id:
                return True
        return False

    def _maybe_commit(self) -> bool:
        """§5.3/§5.4.2: commit the highest index a quorum of voters holds, but only if it
        is from the current term; older entries then commit indirectly."""
        mci = self.tracker.committed()
        if mci <= self.log.committed or self.log.term(mci) != self.term:
            return False
        self._commit_to(mci)
        return True

    def restore_commit(self, index: int) -> None:
        """Commit up to `index` without a quorum round, because it is known committed:
        the bootstrap entries (committed by construction) or the commit index of the
        hard state read back at restart (§5.1: committed entries stay committed).
        Replays the membership changes up to it (membership takes effect at commit)
        and starts the progress tracker over for the configuration that results."""
        self._commit_to(index)
        self._rebuild_progress()

    def _commit_to(self, index: int) -> bool:
        old = self.log.committed
        if not self.log.commit_to(index):
            return False
        self._apply_committed_conf_changes(old, self.log.committed)
        if self.role == Role.LEADER and self.pending_reads and self._committed_in_term():
            pending, self.pending_reads = self.pending_reads, []
            for m in pending:
                self._handle_read_index_as_leader(m)
        return True

    def _committed_in_term(self) -> bool:
        return self.log.term(self.log.committed) == self.term

    # --- proposals (called through RawNode) --------------------------------------

    def check_can_propose(self) -> None:
        if self.role == Role.LEADER:
            if self.id not in self.tracker or self.removing_self:
                raise NotAMember(f"member {self.id} is being removed from the cluster")
            if self.lead_transferee != NONE:
                raise TransferInProgress(f"leadership is moving to member {self.lead_transferee}")
        elif self.lead == NONE:
            raise NoLeader("no leader is known; retry shortly")

    def propose(self, datas: Sequence[bytes]) -> None:
        self.check_can_propose()
        if self.role == Role.LEADER:
            self._append_entries([Entry(0, 0, EntryType.NORMAL, d) for d in datas])
            self._bcast_append()
            return
        ents = tuple(Entry(0, 0, EntryType.NORMAL, d) for d in datas)
        self._send(Message(MT.PROP_FORWARD, to=self.lead, sender=self.id, entries=ents))

    def propose_conf_change(self, cc: ConfChange, data: bytes) -> None:
        if self.role != Role.LEADER:
            raise NotLeader(f"membership changes go through the leader ({self.lead or 'none'})")
        self.check_can_propose()
        if self.pending_conf_index > self.log.committed:
            raise ConfChangeInProgress(
                "a membership change is still being committed; one change at a time"
            )
        validate_conf_change(self.conf_state, cc)
        self._check_conf_change_safe(cc)
        self._append_entries([Entry(0, 0, EntryType.CONF_CHANGE, data)])
        self.pending_conf_index = self.log.last_index()
        if cc.type == ConfChangeType.REMOVE_NODE and cc.node_id == self.id:
            self.removing_self = True
        self._bcast_append()

    def _check_conf_change_safe(self, cc: ConfChange) -> None:
        """etcd's strict reconfiguration check: never make a change after which the
        voters that are reachable now would not form a quorum."""
        voters = set(self.conf_state.voters)
        if cc.type == ConfChangeType.ADD_NODE:
            pr = self.tracker.get(cc.node_id)
            if pr is not None and pr.is_learner:
                lag = self.log.committed - pr.match
                if lag > self.cfg.max_promote_lag or not self.tracker.is_reachable(pr, self.now):
                    raise UnsafeConfChange(
                        f"learner {cc.node_id} is not caught up (match {pr.match}, "
                        f"commit {self.log.committed}); promote it once it is"
                    )
            voters.add(cc.node_id)
        elif cc.type == ConfChangeType.REMOVE_NODE:
            voters.discard(cc.node_id)
        else:
            return
        reachable = self.tracker.reachable(self.id, self.now)
        if not quorum.has_quorum(voters, reachable):
            active = quorum.count(voters, reachable)
            raise UnsafeConfChange(
                f"after this change only {active} of {len(voters)} voters would be reachable,"
                " which is not a quorum"
            )

    def read_index(self, ctx: bytes) -> None:
        m = Message(MT.READ_INDEX, to=self.id, sender=self.id, context=ctx)
        if self.role == Role.LEADER:
            self._handle_read_index_as_leader(m)
        elif self.lead == NONE:
            raise NoLeader("no leader is known; retry shortly")
        else:
            m.to = self.lead
            self._send(m)

    def _handle_read_index_as_leader(self, m: Message) -> None:
        if not self._committed_in_term():
            # Our commit index may be stale until our first entry commits (thesis §6.4).
            # A lone voter too: the commit index is not fsynced on its own (see
            # Ready.must_sync), so after a restart it may lag what was committed.
            self.pending_reads.append(m)
            return
        if quorum.has_quorum(self._voters(), {self.id}):
            # A lone voter: its own ack is the quorum, no heartbeat round needed.
            self._respond_read_index(m, self.log.committed)
            return
        self.read_only.add_request(self.log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _respond_read_index(self, m: Message, index: int) -> None:
        if m.sender in (NONE, self.id):
            self.read_states.append(ReadState(index, m.context))
        else:
            self._send(
                Message(
                    MT.READ_INDEX_RESP, to=m.sender, sender=self.id, index=index, context=m.context
                )
            )

    def transfer_leader(self, to: int) -> None:
        if self.role != Role.LEADER:
            raise NotLeader("only the leader can transfer leadership")
        if to == self.id:
            return
        pr = self.tracker.get(to)
        if pr is None or pr.is_learner:
            raise InvalidConfChange(f"member {to} is not a voter; cannot transfer leadership")
        if self.lead_transferee == to:
            return
        # The transfer must finish within one election timeout (thesis §3.10).
        self.election_elapsed = 0
        self.lead_transferee = to
        if pr.match == self.log.last_index():
            self._send_timeout_now(to)
        else:
            self._maybe_send_append(to, send_if_empty=True)

    def compact(self, index: int, data: bytes) -> Snapshot:
        if index > self.log.applied:
            raise CompactionError(f"cannot snapshot at {index}: applied is {self.log.applied}")
        if index <= self.snapshot.metadata.index:
            raise CompactionError(
                f"snapshot at {index} is not newer than {self.snapshot.metadata.index}"
            )
        term = self.log.term(index)
        if term is None:
            raise CompactionError(f"entry {index} is not in the log")
        cs = self.conf_state_at(index)
        snap = Snapshot(SnapshotMetadata(index, term, cs), data)
        self._set_snapshot(snap)
        self.log.compact(max(self.log.offset, index - self.cfg.snapshot_catchup_entries))
        return snap

    def _set_snapshot(self, snap: Snapshot) -> None:
        index = snap.metadata.index
        self.base_conf_state = self.conf_state_at(index)
        self.conf_history = [(i, c) for i, c in self.conf_history if i > index]
        self.snapshot = snap

    # --- the step function -------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.term == 0:
            pass  # local or forwarded
        elif m.term > self.term:
            if m.type in _VOTE_TYPES:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.cfg.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.cfg.election_tick
                )
                if not force and in_lease:
                    # §6 of the thesis: a member that heard from a leader recently
                    # ignores votes, so a removed or partitioned member cannot disrupt.
                    return
            if m.type == MT.PRE_VOTE or (m.type == MT.PRE_VOTE_RESP and not m.reject):
                pass  # never change our term for a PreVote
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.sender)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (
                MT.HEARTBEAT,
                MT.APP,
            ):
                # A stale leader learns the new term and steps down; without this it
                # could stay isolated forever behind PreVote/CheckQuorum.
                self._send(Message(MT.APP_RESP, to=m.sender, sender=self.id))
            elif m.type == MT.PRE_VOTE:
                self._send(
                    Message(
                        MT.PRE_VOTE_RESP, to=m.sender, sender=self.id, term=self.term, reject=True
                    )
                )
            return

        t = m.type
        if t == MT.HUP:
            self._hup(transfer=False)
        elif t in _VOTE_TYPES:
            self._handle_vote_request(m)
        elif t == MT.PROP_FORWARD and m.reject:
            self.dropped_proposals.extend(e.data for e in m.entries)
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote_request(self, m: Message) -> None:
        # Learners answer too (as in etcd): a learner may already be a voter in the
        # candidate's newer configuration. Its vote counts only if the candidate sees
        # it as a voter, see _poll.
        resp = MT.VOTE_RESP if m.type == MT.VOTE else MT.PRE_VOTE_RESP
        can_vote = (
            self.vote == m.sender
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Reply with the message's term: a PreVote is answered in the future term.
            self._send(Message(resp, to=m.sender, sender=self.id, term=m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.sender
        else:
            self._send(Message(resp, to=m.sender, sender=self.id, term=self.term, reject=True))

    def _reject_forward(self, m: Message) -> None:
        if m.sender != self.id:
            self._send(
                Message(
                    MT.PROP_FORWARD, to=m.sender, sender=self.id, entries=m.entries, reject=True
                )
            )

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.BEAT:
            self._bcast_heartbeat()
        elif t == MT.CHECK_QUORUM:
            self._leader_check_quorum()
        elif t == MT.PROP_FORWARD:
            self._leader_forwarded_proposal(m)
        elif t == MT.READ_INDEX:
            self._handle_read_index_as_leader(m)
        else:
            pr = self.tracker.get(m.sender)
            if pr is None:
                return
            if t == MT.APP_RESP:
                self._leader_append_response(m, pr)
            elif t == MT.HEARTBEAT_RESP:
                self._leader_heartbeat_response(m, pr)
            elif t == MT.SNAP_STATUS:
                self._leader_snapshot_status(m, pr)
            elif t == MT.UNREACHABLE and pr.state == ProgressState.REPLICATE:
                pr.become_probe()

    def _leader_check_quorum(self) -> None:
        """CheckQuorum (thesis §6.2): a leader that has not heard from a quorum within
        an election timeout steps down, so a partitioned leader stops serving."""
        if not self._quorum_active():
            log.warning("member %d: lost contact with a quorum, stepping down", self.id)
            self.become_follower(self.term, NONE)

    def _leader_forwarded_proposal(self, m: Message) -> None:
        try:
            self.check_can_propose()
        except ProposalDropped:
            self._reject_forward(m)
            return
        self._append_entries(
            [Entry(0, 0, EntryType.NORMAL, e.data) for e in m.entries if e.type == EntryType.NORMAL]
        )
        self._bcast_append()

    def _leader_append_response(self, m: Message, pr: Progress) -> None:
        pr.record_response(self.now)
        if m.reject:
            # §5.3: back up next_index (by term when the follower says which) and probe.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(m.sender, send_if_empty=True)
            return
        was_paused = pr.is_paused()
        updated = pr.maybe_update(m.index)
        if not updated and not (pr.match == m.index and pr.state == ProgressState.PROBE):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.free_inflights_to(m.index)
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._maybe_send_append(m.sender, send_if_empty=True)
        while self.role == Role.LEADER and self._maybe_send_append(m.sender, send_if_empty=False):
            pass
        if (
            self.role == Role.LEADER
            and m.sender == self.lead_transferee
            and pr.match == self.log.last_index()
        ):
            self._send_timeout_now(m.sender)

    def _leader_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.record_response(self.now)
        pr.heartbeat_responded()
        if pr.match < self.log.last_index() or pr.state == ProgressState.PROBE:
            self._maybe_send_append(m.sender, send_if_empty=True)
        if not m.context:
            return
        # ReadIndex (thesis §6.4): the read is safe once a quorum acked this round.
        acks = self.read_only.recv_ack(m.sender, m.context)
        if acks is None or not quorum.has_quorum(self._voters(), acks):
            return
        for rs in self.read_only.advance(m.context):
            self._respond_read_index(rs.request, rs.index)

    def _leader_snapshot_status(self, m: Message, pr: Progress) -> None:
        if pr.state != ProgressState.SNAPSHOT:
            return
        if m.reject:
            pr.pending_snapshot = 0
        pr.become_probe()
        # Wait for the next heartbeat response before probing again.
        pr.probe_sent = True

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        resp = MT.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MT.VOTE_RESP
        if t == MT.PROP_FORWARD:
            self._reject_forward(m)
        elif t == MT.APP:
            self.become_follower(m.term, m.sender)
            self._handle_append(m)
        elif t == MT.HEARTBEAT:
            self.become_follower(m.term, m.sender)
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.become_follower(m.term, m.sender)
            self._handle_snapshot(m)
        elif t == resp:
            result = self._poll(m.sender, t, not m.reject)
            if result == VoteResult.WON:
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign(MT.VOTE, transfer=False)
                else:
                    self.become_leader()
                    self._bcast_append()
            elif result == VoteResult.LOST:
                self.become_follower(self.term, NONE)

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.PROP_FORWARD:
            self._reject_forward(m)
        elif t == MT.APP:
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_append(m)
        elif t == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.sender
            self._handle_snapshot(m)
        elif t == MT.TIMEOUT_NOW:
            log.info("member %d: leader %d asked us to campaign", self.id, m.sender)
            self._hup(transfer=True)
        elif t == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    # --- follower handlers -------------------------------------------------------

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(Message(MT.APP_RESP, to=m.sender, sender=self.id, index=self.log.committed))
            return
        old = self.log.committed
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._apply_committed_conf_changes(old, self.log.committed)
            self._send(Message(MT.APP_RESP, to=m.sender, sender=self.id, index=last_new))
            return
        # Tell the leader where our log could match so it can skip a whole term.
        hint = self.log.find_conflict_by_term(min(m.index, self.log.last_index()), m.log_term)
        self._send(
            Message(
                MT.APP_RESP,
                to=m.sender,
                sender=self.id,
                index=m.index,
                reject=True,
                reject_hint=hint,
                log_term=self.log.term(hint) or 0,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self._commit_to(m.commit)
        self._send(Message(MT.HEARTBEAT_RESP, to=m.sender, sender=self.id, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is None or snap.empty:
            return
        if self._restore(snap):
            self._send(
                Message(MT.APP_RESP, to=m.sender, sender=self.id, index=self.log.last_index())
            )
        else:
            self._send(Message(MT.APP_RESP, to=m.sender, sender=self.id, index=self.log.committed))

    def _restore(self, snap: Snapshot) -> bool:
        meta = snap.metadata
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            # We already have the log it covers: just learn that it is committed.
            self._commit_to(meta.index)
            return False
        self.log.restore(snap)
        self.conf_history = []
        self.base_conf_state = meta.conf_state
        self.snapshot = snap
        self.tracker.reset(
            meta.conf_state, self.log.last_index(), self.id, self.log.stable, self.now
        )
        log.info("member %d: restored snapshot at index %d term %d", self.id, meta.index, meta.term)
        return True

    # --- observation (through RawNode) --------------------------------------------

    def peer_progress(self) -> dict[int, PeerProgress]:
        """A copy of the tracker's view of every member, for Status."""
        return self.tracker.peer_progress(self.id, self.now)
