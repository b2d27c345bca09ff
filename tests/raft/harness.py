"""A small deterministic network of RawNodes for the core's unit tests.

Modelled on etcd's `network` (raft_test.go): every member is a RawNode with an in-memory
durable store and a trivial state machine (the list of applied payloads). Messages go
through one global FIFO queue and are delivered synchronously; after every delivery and
every tick each member's Ready is processed in the documented order

    persist (snapshot, entries, hard state) -> send -> install snapshot, apply -> advance

so a test reads like a scenario: partition, tick, propose, deliver, assert.

Faults are explicit and symmetric to what a test wants to say: `isolate`/`cut` links,
`drop` message types, `hold` messages (kept aside, delivered later by `release`), `crash`
and `restart` a member from what it persisted. Nothing is random except the members'
election timeouts, which come from `Config.seed` (a distinct seed per member).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import msgpack

from raftkv.raft import Config, RawNode
from raftkv.raft.types import (
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
)

MT = MessageType
Filter = Callable[[Message], bool]


@dataclass
class Storage:
    """What one member has made durable: the WAL and snapshot file of a real member."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def apply_snapshot(self, snap: Snapshot) -> None:
        # A snapshot from the leader replaces the whole log (§7).
        self.snapshot = snap
        self.entries = []

    def save_compaction(self, snap: Snapshot) -> None:
        # A local snapshot: the log after it stays.
        self.snapshot = snap

    def append(self, ents: list[Entry]) -> None:
        if not ents:
            return
        first = ents[0].index
        kept = [e for e in self.entries if e.index < first]
        self.entries = kept + list(ents)
        base = self.snapshot.metadata.index if self.snapshot else 0
        tail = [e.index for e in self.entries if e.index > base]
        assert tail == list(range(base + 1, base + 1 + len(tail))), f"storage gap: {tail}"

    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        return self.snapshot.metadata.index if self.snapshot else 0


@dataclass
class StateMachine:
    """The application: applies NORMAL payloads in order; a snapshot is that list."""

    data: list[bytes] = field(default_factory=list)
    applied_index: int = 0
    applied: list[Entry] = field(default_factory=list)
    """Every committed entry handed out, in order (empty and conf entries included)."""

    def snapshot_data(self) -> bytes:
        out: bytes = msgpack.packb(self.data, use_bin_type=True)
        return out

    def install(self, snap: Snapshot) -> None:
        self.data = list(msgpack.unpackb(snap.data, raw=False)) if snap.data else []
        self.applied_index = snap.metadata.index

    def apply(self, e: Entry) -> None:
        assert e.index == self.applied_index + 1, (
            f"applied out of order: {e.index} after {self.applied_index}"
        )
        self.applied_index = e.index
        self.applied.append(e)
        if e.type == EntryType.NORMAL and e.data:
            self.data.append(e.data)


class Network:
    def __init__(
        self,
        ids: Iterable[int],
        *,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        seed: int = 1,
        shared_seed: bool = False,
        report_snapshots: bool = False,
        **cfg: int,
    ) -> None:
        self.ids = sorted(ids)
        self.seed = seed
        self.shared_seed = shared_seed
        """Give every member the same Config.seed instead of one per member."""
        self.report_snapshots = report_snapshots
        """Act like a real transport: report every SNAP as sent or lost to its sender."""
        self.cfg_kwargs: dict[str, int | bool] = dict(
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            **cfg,
        )
        self.nodes: dict[int, RawNode] = {}
        self.storage: dict[int, Storage] = {}
        self.sm: dict[int, StateMachine] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.dropped_proposals: dict[int, list[bytes]] = {}
        self.queue: deque[Message] = deque()
        self.sent: list[Message] = []
        """Every message any member emitted, before faults: for counting in tests."""
        self.delivered: list[Message] = []
        self.held: list[Message] = []
        self.down: set[int] = set()
        self._cuts: set[tuple[int, int]] = set()
        self._drops: list[Filter] = []
        self._holds: list[Filter] = []
        for i in self.ids:
            self.add_bootstrapped(i, self.ids)

    # --- membership of the harness ------------------------------------------------

    def config(self, i: int, **overrides: int | bool) -> Config:
        kw = {**self.cfg_kwargs, **overrides}
        seed = self.seed if self.shared_seed else self.seed * 1000 + i
        return Config(id=i, seed=seed, **kw)  # type: ignore[arg-type]

    def _register(self, i: int, node: RawNode) -> None:
        self.nodes[i] = node
        self.storage.setdefault(i, Storage())
        self.sm.setdefault(i, StateMachine())
        self.read_states.setdefault(i, [])
        self.dropped_proposals.setdefault(i, [])
        self.down.discard(i)

    def add_bootstrapped(self, i: int, voters: Iterable[int]) -> RawNode:
        node = RawNode.bootstrap(self.config(i), voters=sorted(voters))
        self._register(i, node)
        self.process(i)
        return node

    def add_joining(self, i: int, **overrides: int | bool) -> RawNode:
        """A new empty member (RawNode.join) that waits for the leader to add it."""
        node = RawNode.join(self.config(i, **overrides))
        if i not in self.ids:
            self.ids.append(i)
        self._register(i, node)
        return node

    def crash(self, i: int) -> None:
        """Lose everything that was not persisted; messages to `i` are lost meanwhile."""
        self.down.add(i)
        lost = [m for m in self.queue if m.to == i]
        self.queue = deque(m for m in self.queue if m.to != i)
        for m in lost:
            self._report_snapshot(m, ok=False)

    def restart(self, i: int, **overrides: int | bool) -> RawNode:
        st = self.storage[i]
        node = RawNode.restart(self.config(i, **overrides), st.hard_state, st.snapshot, st.entries)
        sm = StateMachine()
        if st.snapshot is not None:
            sm.install(st.snapshot)
        self.sm[i] = sm
        self.nodes[i] = node
        self.down.discard(i)
        self.process(i)
        return node

    # --- faults ----------------------------------------------------------------

    def cut(self, a: int, b: int) -> None:
        self._cuts.add((a, b))
        self._cuts.add((b, a))

    def isolate(self, i: int) -> None:
        for j in self.ids:
            if j != i:
                self.cut(i, j)

    @staticmethod
    def _matcher(
        types: tuple[MessageType, ...], frm: int | None, to: int | None, where: Filter | None
    ) -> Filter:
        def f(m: Message) -> bool:
            return (
                (not types or m.type in types)
                and (frm is None or m.sender == frm)
                and (to is None or m.to == to)
                and (where is None or where(m))
            )

        return f

    def drop(
        self,
        *types: MessageType,
        frm: int | None = None,
        to: int | None = None,
        where: Filter | None = None,
    ) -> Filter:
        """Drop matching messages (all types if none given): a lossy link."""
        f = self._matcher(types, frm, to, where)
        self._drops.append(f)
        return f

    def hold(
        self,
        *types: MessageType,
        frm: int | None = None,
        to: int | None = None,
        where: Filter | None = None,
    ) -> Filter:
        """Keep matching messages aside until `release()`: a slow link, not a lossy one."""
        f = self._matcher(types, frm, to, where)
        self._holds.append(f)
        return f

    def undo(self, f: Filter) -> None:
        """Lift one drop or hold installed earlier."""
        if f in self._drops:
            self._drops.remove(f)
        if f in self._holds:
            self._holds.remove(f)

    def discard_held(self) -> None:
        self._holds.clear()
        self.held = []

    def release(self, deliver: bool = True) -> None:
        self._holds.clear()
        self.queue.extend(self.held)
        self.held = []
        if deliver:
            self.stabilize()

    def heal(self) -> None:
        self._cuts.clear()
        self._drops.clear()

    def _blocked(self, m: Message) -> bool:
        if m.to in self.down or m.sender in self.down or m.to not in self.nodes:
            return True
        if (m.sender, m.to) in self._cuts:
            return True
        return any(f(m) for f in self._drops)

    # --- driving ------------------------------------------------------------------

    def handle_ready(self, i: int, rd: Ready) -> None:
        node, st, sm = self.nodes[i], self.storage[i], self.sm[i]
        # 1. persist
        if rd.snapshot is not None:
            st.apply_snapshot(rd.snapshot)
        st.append(rd.entries)
        if rd.hard_state is not None:
            st.hard_state = rd.hard_state
        # 2. send
        for m in rd.messages:
            assert m.sender == i, m
            self.sent.append(m)
            self.queue.append(m)
        # 3. install, apply
        if rd.snapshot is not None:
            sm.install(rd.snapshot)
        for e in rd.committed_entries:
            assert e.index <= st.last_index(), "applied an entry that is not persisted"
            sm.apply(e)
        # 4. reads
        self.read_states[i].extend(rd.read_states)
        self.dropped_proposals[i].extend(rd.dropped_proposals)
        node.advance(rd)

    def process(self, i: int) -> None:
        if i in self.down:
            return
        node = self.nodes[i]
        while node.has_ready():
            self.handle_ready(i, node.ready())

    def process_all(self) -> None:
        for i in list(self.nodes):
            self.process(i)

    def deliver_one(self) -> Message | None:
        """Deliver the oldest queued message; returns it (or None if it was lost)."""
        m = self.queue.popleft()
        if self._blocked(m):
            self._report_snapshot(m, ok=False)
            return None
        if any(f(m) for f in self._holds):
            self.held.append(m)
            return None
        self.delivered.append(m)
        self.nodes[m.to].step(m)
        self.process(m.to)
        self._report_snapshot(m, ok=True)
        return m

    def _report_snapshot(self, m: Message, ok: bool) -> None:
        if self.report_snapshots and m.type == MT.SNAP and m.sender not in self.down:
            self.nodes[m.sender].report_snapshot(m.to, ok)
            self.process(m.sender)

    def stabilize(self, max_steps: int = 200_000) -> None:
        """Deliver until no member has anything to say."""
        self.process_all()
        steps = 0
        while self.queue:
            self.deliver_one()
            steps += 1
            assert steps < max_steps, "network did not settle"
            if not self.queue:
                self.process_all()

    def tick(self, n: int = 1, ids: Iterable[int] | None = None, settle: bool = True) -> None:
        targets = list(ids) if ids is not None else list(self.nodes)
        for _ in range(n):
            for i in targets:
                if i not in self.down:
                    self.nodes[i].tick()
                    self.process(i)
            if settle:
                self.stabilize()

    def tick_until(self, cond: Callable[[], bool], limit: int = 500) -> int:
        for k in range(limit):
            if cond():
                return k
            self.tick()
        raise AssertionError("condition not reached")

    # --- conveniences ------------------------------------------------------------

    def campaign(self, i: int) -> None:
        self.nodes[i].campaign()
        self.stabilize()

    def elect(self, i: int) -> RawNode:
        self.campaign(i)
        assert self.nodes[i].role == Role.LEADER, f"{i} is {self.nodes[i].role}"
        return self.nodes[i]

    def propose(self, i: int, data: bytes) -> None:
        self.nodes[i].propose(data)
        self.stabilize()

    def compact(self, i: int) -> Snapshot:
        """Snapshot member `i` at its applied index, as the application would (§7)."""
        sm = self.sm[i]
        snap = self.nodes[i].compact(sm.applied_index, sm.snapshot_data())
        self.storage[i].save_compaction(snap)
        self.process(i)
        return snap

    def leaders(self) -> list[int]:
        return [i for i, n in self.nodes.items() if i not in self.down and n.role == Role.LEADER]

    def leader(self) -> int:
        ls = self.leaders()
        assert len(ls) == 1, f"expected one leader, got {ls}"
        return ls[0]

    def data(self, i: int) -> list[bytes]:
        return self.sm[i].data

    def msgs(
        self,
        mtype: MessageType,
        *,
        frm: int | None = None,
        to: int | None = None,
        sent: bool = False,
    ) -> list[Message]:
        """Messages of one type that were delivered (or, with `sent`, emitted)."""
        source = self.sent if sent else self.delivered
        return [
            m
            for m in source
            if m.type == mtype and (frm is None or m.sender == frm) and (to is None or m.to == to)
        ]

    def count(
        self,
        mtype: MessageType,
        *,
        frm: int | None = None,
        to: int | None = None,
        sent: bool = False,
    ) -> int:
        return len(self.msgs(mtype, frm=frm, to=to, sent=sent))

    def clear_log(self) -> None:
        self.sent.clear()
        self.delivered.clear()


def conf(voters: Iterable[int], learners: Iterable[int] = ()) -> ConfState:
    return ConfState(tuple(sorted(voters)), tuple(sorted(learners)))


def ents(term: int, first: int, n: int) -> list[Entry]:
    """`n` entries of `term` starting at index `first` with distinct payloads."""
    return [
        Entry(term, first + k, EntryType.NORMAL, f"t{term}i{first + k}".encode()) for k in range(n)
    ]


def with_term(m: Message, term: int) -> Message:
    return replace(m, term=term)
