"""The safety properties of Raft, checked incrementally while a simulation runs.

Each check is fed by the cluster at the moment the state it is about changes (a Ready
persisted, a message sent, an entry applied, a role observed), so the cost per step is
proportional to what that step changed, and a violation is raised at the step that
caused it. The properties are the paper's (Figure 3) plus the contracts the core's API
promises (persist before send, apply only what is committed, snapshots carry state and
membership as of their index):

- election safety (§5.2): at most one leader per term, over the whole run;
- log matching (§5.3): an (index, term) pair identifies one entry and its whole prefix;
- leader completeness (§5.4): a leader of term T holds every entry committed in a term
  < T, including entries whose commitment becomes known only after its election. An
  entry's commit term is the term of the member whose persisted commit index first
  covered it: exactly the committing leader's term (a leader persists its commit index
  before any message carrying it leaves), an upper bound in every other case;
- state machine safety (§5.4.3): no two members apply different entries at one index,
  each applies in order without gaps, snapshots restore exactly the committed state;
- durability (§5.1, Figure 2's "before responding to RPCs"): a granted vote and an
  acknowledged append are on disk before the message leaves; a member never votes twice
  in a term, and its term and commit index never go backwards;
- membership (thesis §4): learners and removed members never campaign or lead;
- linearizable reads (thesis §6.4): a ReadState is at least the commit index known to be
  committed anywhere when the read was requested.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from raftkv.raft.confchange import apply_conf_change, decode_conf_change
from raftkv.raft.errors import InvalidConfChange
from raftkv.raft.types import (
    LOCAL_MESSAGES,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Role,
    Snapshot,
)

from .statemachine import GENESIS, HashStateMachine, decode_state
from .storage import DurableStore

MT = MessageType
_LEADER_ONLY = frozenset({MT.APP, MT.HEARTBEAT, MT.SNAP, MT.TIMEOUT_NOW})
_CAMPAIGNING = frozenset({Role.PRE_CANDIDATE, Role.CANDIDATE, Role.LEADER})


class InvariantViolation(AssertionError):
    """A safety property does not hold; `kind` names the property."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(slots=True)
class ElectionRecord:
    """The log a leader held when it was elected, kept to check entries whose commitment
    is learned later (leader completeness is about all of time, not one instant)."""

    term: int
    leader: int
    snap_index: int
    snap_term: int
    terms: list[int]
    """terms[k] is the term of the entry at snap_index + 1 + k."""

    def term_at(self, index: int) -> int | None:
        if index == self.snap_index:
            return self.snap_term
        k = index - self.snap_index - 1
        if 0 <= k < len(self.terms):
            return self.terms[k]
        return None


@dataclass(slots=True)
class ReadRecord:
    node: int
    required: int
    """The highest index known committed anywhere when read_index was called."""


@dataclass(slots=True)
class NodeTrack:
    """Per-member history the checker keeps across crashes (keyed by member id)."""

    hard_state: HardState = field(default_factory=HardState)
    recorded_commit: int = 0
    """Entries up to here of this member's log have been recorded as committed."""
    pending_leader_term: int = 0
    """Became leader of this term before its Ready was persisted; check on persist."""


class InvariantChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}
        self.elections: list[ElectionRecord] = []
        self.entry_meta: dict[tuple[int, int], tuple[EntryType, bytes, int]] = {}
        self.committed: dict[int, Entry] = {}
        self.commit_term: dict[int, int] = {}
        self.max_committed = 0
        self.max_known_commit = 0
        self.digests: dict[int, bytes] = {0: GENESIS}
        self.conf_index: list[int] = [0]
        self.conf_states: list[ConfState] = [ConfState()]
        self.nodes: dict[int, NodeTrack] = {}
        self.reads: dict[bytes, ReadRecord] = {}
        self.proposed: set[bytes] = set()
        self.removed: list[tuple[int, int]] = []
        """(index, member) of every committed REMOVE_NODE, in commit order."""

    # --- helpers -----------------------------------------------------------------

    def track(self, node: int) -> NodeTrack:
        t = self.nodes.get(node)
        if t is None:
            t = self.nodes[node] = NodeTrack()
        return t

    def conf_at(self, index: int) -> ConfState:
        """Membership after applying every committed conf change at or below `index`."""
        k = bisect.bisect_right(self.conf_index, index) - 1
        return self.conf_states[k]

    @property
    def latest_conf(self) -> ConfState:
        return self.conf_states[-1]

    @staticmethod
    def fail(kind: str, detail: str) -> InvariantViolation:
        return InvariantViolation(kind, detail)

    # --- roles: election safety, learners never campaign -------------------------

    def observe_role(
        self, node: int, role: Role, term: int, conf: ConfState, store: DurableStore, durable: bool
    ) -> None:
        """Called after every input to a member and after its Ready loop; `durable` says
        whether the store already holds everything the member's log holds."""
        if role in _CAMPAIGNING and node not in conf.voters:
            raise self.fail(
                "learners-never-campaign",
                f"member {node} is {role} in term {term} but is not a voter in its own "
                f"configuration {conf}",
            )
        if role == Role.LEADER:
            self._note_leader(node, term, store, durable)

    def _note_leader(self, node: int, term: int, store: DurableStore, durable: bool) -> None:
        prev = self.leaders.get(term)
        if prev is None:
            self.leaders[term] = node
            if durable:
                self._check_new_leader(node, term, store)
            else:
                self.track(node).pending_leader_term = term
        elif prev != node:
            raise self.fail(
                "election-safety", f"members {prev} and {node} are both leader of term {term}"
            )

    def _check_new_leader(self, node: int, term: int, store: DurableStore) -> None:
        rec = ElectionRecord(
            term, node, store.snap_index, store.snap_term, [e.term for e in store.entries]
        )
        self.elections.append(rec)
        lo = rec.snap_index + 1
        si = rec.snap_index
        if si and si in self.committed and self.committed[si].term != rec.snap_term:
            raise self.fail(
                "leader-completeness",
                f"new leader {node} of term {term} has a snapshot at {si} of term "
                f"{rec.snap_term}, but the committed entry there has term "
                f"{self.committed[si].term}",
            )
        for i in range(lo, self.max_committed + 1):
            e = self.committed.get(i)
            if e is None or self.commit_term[i] >= term:
                continue
            if rec.term_at(i) != e.term:
                raise self.fail(
                    "leader-completeness",
                    f"member {node} became leader of term {term} without entry {i} (term "
                    f"{e.term}) committed in term {self.commit_term[i]}; its log has term "
                    f"{rec.term_at(i)} there",
                )

    # --- persistence -------------------------------------------------------------

    def on_persist(
        self,
        node: int,
        store: DurableStore,
        entries: list[Entry],
        hard_state: HardState | None,
        snapshot: Snapshot | None,
    ) -> None:
        """After a Ready's snapshot, entries and hard state were written to `store`."""
        tr = self.track(node)
        if snapshot is not None:
            self._check_snapshot_content(node, snapshot, "persisted snapshot")
            tr.recorded_commit = max(tr.recorded_commit, snapshot.metadata.index)
        if entries:
            self._check_entries(node, store, entries)
        hs = store.hard_state
        if hard_state is not None:
            old = tr.hard_state
            if hs.term < old.term:
                raise self.fail(
                    "durability", f"member {node} persisted term {hs.term} after {old.term}"
                )
            if hs.term == old.term and old.vote != 0 and hs.vote != old.vote:
                raise self.fail(
                    "durability",
                    f"member {node} voted for {old.vote} and then {hs.vote} in term {hs.term}",
                )
            if hs.commit < old.commit:
                raise self.fail(
                    "durability",
                    f"member {node} persisted commit {hs.commit} after {old.commit}",
                )
            tr.hard_state = hs
        if store.entries and store.entries[-1].term > hs.term:
            raise self.fail(
                "durability",
                f"member {node} stores entry {store.last_index} of term "
                f"{store.entries[-1].term} but its persisted term is {hs.term}",
            )
        commit = max(hs.commit, store.snap_index)
        if commit > store.last_index:
            raise self.fail(
                "durability",
                f"member {node} persisted commit {commit} beyond its persisted log "
                f"(last index {store.last_index})",
            )
        if commit > tr.recorded_commit:
            for i in range(max(tr.recorded_commit, store.snap_index) + 1, commit + 1):
                e = store.entry_at(i)
                assert e is not None
                self._record_committed(node, e, hs.term)
            tr.recorded_commit = commit
        if commit > self.max_known_commit:
            self.max_known_commit = commit
        if tr.pending_leader_term:
            term, tr.pending_leader_term = tr.pending_leader_term, 0
            self._check_new_leader(node, term, store)

    def _check_entries(self, node: int, store: DurableStore, entries: list[Entry]) -> None:
        """§5.3 log matching, incrementally: every (index, term) ever stored anywhere
        maps to one (type, data, previous term). By induction on the index, two logs
        that share an (index, term) then share the whole prefix."""
        meta = self.entry_meta
        committed_here = self.track(node).recorded_commit
        for e in entries:
            if e.index <= committed_here:
                c = self.committed.get(e.index)
                if c is not None and c != e:
                    raise self.fail(
                        "state-machine-safety",
                        f"member {node} overwrote committed {_fmt_entry(c)} with {_fmt_entry(e)}",
                    )
            prev = store.term_at(e.index - 1)
            if prev is not None and e.term < prev:
                raise self.fail(
                    "log-matching",
                    f"member {node} stored entry {e.index} of term {e.term} after an entry "
                    f"of term {prev}: terms must not decrease along the log",
                )
            key = (e.index, e.term)
            old = meta.get(key)
            if old is None:
                meta[key] = (e.type, e.data, -1 if prev is None else prev)
                continue
            if old[0] != e.type or old[1] != e.data:
                raise self.fail(
                    "log-matching",
                    f"member {node} stored entry {e.index}/{e.term} = {e.type.name} "
                    f"{e.data!r}, elsewhere it is {old[0].name} {old[1]!r}",
                )
            if prev is not None and old[2] != -1 and old[2] != prev:
                raise self.fail(
                    "log-matching",
                    f"member {node} stored entry {e.index}/{e.term} after an entry of term "
                    f"{prev}, elsewhere it follows term {old[2]}: the logs differ before "
                    "an identical entry",
                )

    def _record_committed(self, node: int, e: Entry, term: int) -> None:
        old = self.committed.get(e.index)
        if old is not None:
            if old != e:
                raise self.fail(
                    "state-machine-safety",
                    f"member {node} committed {_fmt_entry(e)} but {_fmt_entry(old)} was "
                    "committed at that index before",
                )
            return
        self.committed[e.index] = e
        self.commit_term[e.index] = term
        if e.index > self.max_committed:
            self.max_committed = e.index
        for rec in self.elections:
            if rec.term > term and rec.snap_index < e.index and rec.term_at(e.index) != e.term:
                raise self.fail(
                    "leader-completeness",
                    f"{_fmt_entry(e)} is committed in term {term}, but member {rec.leader} "
                    f"was elected leader of the later term {rec.term} without it (its log "
                    f"had term {rec.term_at(e.index)} there)",
                )
        if e.type == EntryType.CONF_CHANGE:
            try:
                cc = decode_conf_change(e.data)
            except InvalidConfChange as exc:
                raise self.fail(
                    "membership", f"committed conf change at {e.index} is undecodable: {exc}"
                ) from exc
            if e.index <= self.conf_index[-1]:
                raise self.fail(
                    "membership",
                    f"conf change at {e.index} committed after one at {self.conf_index[-1]}",
                )
            new = apply_conf_change(self.conf_states[-1], cc)
            self.conf_index.append(e.index)
            self.conf_states.append(new)
            if cc.type.name == "REMOVE_NODE":
                self.removed.append((e.index, cc.node_id))

    def _check_snapshot_content(self, node: int, snap: Snapshot, what: str) -> None:
        """A snapshot is the state machine of the committed log at its index, with the
        membership as of that index (so a member restored from it votes correctly)."""
        meta = snap.metadata
        idx = meta.index
        try:
            data_index, digest = decode_state(snap.data)
        except Exception as exc:
            raise self.fail(
                "snapshot", f"{what} at {idx} on member {node} has undecodable data: {exc}"
            ) from exc
        if data_index != idx:
            raise self.fail(
                "snapshot",
                f"{what} on member {node} says index {idx} but holds the state of {data_index}",
            )
        want = self.digests.get(idx)
        if want is None:
            raise self.fail(
                "snapshot", f"{what} at {idx} on member {node}: no member ever applied {idx}"
            )
        if want != digest:
            raise self.fail(
                "snapshot",
                f"{what} at {idx} on member {node} holds a state no member had at {idx}",
            )
        c = self.committed.get(idx)
        if c is not None and c.term != meta.term:
            raise self.fail(
                "snapshot",
                f"{what} at {idx} on member {node} has term {meta.term}, the committed "
                f"entry there has term {c.term}",
            )
        if idx <= self.max_committed:
            conf = self.conf_at(idx)
            if _norm(meta.conf_state) != _norm(conf):
                raise self.fail(
                    "snapshot-membership",
                    f"{what} at {idx} on member {node} carries {meta.conf_state}, but the "
                    f"membership at {idx} is {conf}",
                )

    # --- messages ----------------------------------------------------------------

    def on_send(self, node: int, m: Message, store: DurableStore, was_voter: bool) -> None:
        t = m.type
        if t in LOCAL_MESSAGES:
            raise self.fail("api", f"member {node} handed out local message {t.name}")
        if m.to == node:
            raise self.fail("api", f"member {node} sent {t.name} to itself")
        if t in _LEADER_ONLY:
            prev = self.leaders.get(m.term)
            if prev is None:
                self._note_leader(node, m.term, store, durable=True)
            elif prev != node:
                raise self.fail(
                    "election-safety",
                    f"member {node} sent {t.name} as leader of term {m.term}, whose leader "
                    f"is {prev}",
                )
            if t == MT.SNAP:
                if m.snapshot is None or m.snapshot.empty:
                    raise self.fail("api", f"member {node} sent an empty snapshot to {m.to}")
                self._check_snapshot_content(node, m.snapshot, f"snapshot sent to {m.to}")
        elif t == MT.VOTE or t == MT.PRE_VOTE:
            if not was_voter:
                raise self.fail(
                    "learners-never-campaign",
                    f"member {node} sent {t.name} for term {m.term} to {m.to} although it is "
                    "not a voter in its own configuration",
                )
        elif t == MT.VOTE_RESP and not m.reject:
            hs = store.hard_state
            if not (hs.term > m.term or (hs.term == m.term and hs.vote == m.to)):
                raise self.fail(
                    "durability",
                    f"member {node} granted its term-{m.term} vote to {m.to} before persisting "
                    f"it (persisted term {hs.term}, vote {hs.vote})",
                )
        elif t == MT.APP_RESP and not m.reject and m.index > store.last_index:
            raise self.fail(
                "durability",
                f"member {node} acknowledged index {m.index} to {m.to} but has persisted "
                f"only up to {store.last_index}",
            )

    # --- applying ----------------------------------------------------------------

    def on_install_snapshot(self, node: int, sm: HashStateMachine, snap: Snapshot) -> None:
        idx = snap.metadata.index
        if idx < sm.applied:
            raise self.fail(
                "state-machine-safety",
                f"member {node} installs a snapshot at {idx} after applying up to "
                f"{sm.applied}: the applied state would go back",
            )
        self._check_snapshot_content(node, snap, "installed snapshot")

    def on_apply(self, node: int, sm: HashStateMachine, e: Entry, store: DurableStore) -> None:
        """Called before `sm.apply(e)`."""
        if e.index != sm.applied + 1:
            raise self.fail(
                "state-machine-safety",
                f"member {node} applies {e.index} right after {sm.applied}: indexes must be "
                "applied in order, without gaps or repeats",
            )
        commit = max(store.hard_state.commit, store.snap_index)
        if e.index > commit:
            raise self.fail(
                "state-machine-safety",
                f"member {node} applies {e.index} but has persisted commit {commit} only",
            )
        stored = store.term_at(e.index)
        if stored is not None and stored != e.term:
            raise self.fail(
                "state-machine-safety",
                f"member {node} applies {_fmt_entry(e)} but its log holds term {stored} there",
            )
        c = self.committed.get(e.index)
        if c is not None and c != e:
            raise self.fail(
                "state-machine-safety",
                f"member {node} applies {_fmt_entry(e)}, but {_fmt_entry(c)} is committed "
                "at that index",
            )
        if e.type == EntryType.NORMAL and e.data and e.data not in self.proposed:
            raise self.fail(
                "state-machine-safety",
                f"member {node} applies {_fmt_entry(e)} that no client proposed",
            )

    def after_apply(self, node: int, sm: HashStateMachine, e: Entry) -> None:
        want = self.digests.get(e.index)
        if want is None:
            if e.index - 1 not in self.digests:
                raise self.fail(
                    "state-machine-safety",
                    f"member {node} is the first to apply {e.index}, but no member ever "
                    f"applied {e.index - 1}",
                )
            self.digests[e.index] = sm.digest
        elif want != sm.digest:
            raise self.fail(
                "state-machine-safety",
                f"member {node} reached a different state at {e.index} than another member "
                f"did (last applied {_fmt_entry(e)})",
            )

    def on_compact(self, node: int, snap: Snapshot, index: int, data: bytes) -> None:
        if snap.metadata.index != index or snap.data != data:
            raise self.fail(
                "snapshot",
                f"member {node} compact({index}) returned a snapshot at "
                f"{snap.metadata.index} with other data",
            )
        self._check_snapshot_content(node, snap, "compaction snapshot")

    def on_restart(self, node: int, store: DurableStore, applied: int, commit: int) -> None:
        si = store.snap_index
        if applied < si or commit < si:
            raise self.fail(
                "durability",
                f"member {node} restarted with applied {applied}, commit {commit} below its "
                f"persisted snapshot at {si}",
            )

    def check_conf(self, node: int, conf: ConfState, commit: int) -> None:
        """The core makes membership effective when its entry commits; so once a
        member's Ready has been handled its configuration is the one at its commit."""
        if commit > self.max_committed:
            return
        want = self.conf_at(commit)
        if _norm(conf) != _norm(want):
            raise self.fail(
                "membership",
                f"member {node} runs with {conf} at commit {commit}; the committed "
                f"membership there is {want}",
            )

    # --- reads -------------------------------------------------------------------

    def on_read_call(self, ctx: bytes, node: int, required: int) -> None:
        self.reads[ctx] = ReadRecord(node, required)

    def on_read_state(self, node: int, rs: ReadState) -> None:
        rec = self.reads.get(rs.request_ctx)
        if rec is None:
            raise self.fail(
                "linearizable-read", f"member {node} got a ReadState for unknown {rs!r}"
            )
        if rec.node != node:
            raise self.fail(
                "linearizable-read",
                f"read {rs.request_ctx!r} issued at member {rec.node} answered at {node}",
            )
        if rs.index < rec.required:
            raise self.fail(
                "linearizable-read",
                f"read {rs.request_ctx!r} at member {node} got index {rs.index}, but "
                f"{rec.required} was already committed when it was issued (stale read)",
            )


def _norm(cs: ConfState) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(sorted(cs.voters)), tuple(sorted(cs.learners))


def _fmt_entry(e: Entry) -> str:
    kind = "" if e.type == EntryType.NORMAL else f" {e.type.name}"
    return f"entry {e.index}/t{e.term}{kind} {e.data!r}"
