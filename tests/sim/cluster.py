"""The mechanism of a simulated cluster: members, their storage, the clock and the wire.

`Cluster` is a discrete-event simulator. Time is an integer; one Raft tick is `TICK`
time units, so messages can arrive between ticks and overtake each other. Every member
runs the Ready loop of docs/raft-core-api.md (persist, send, install/apply, advance) and
every hand-off is reported to the `InvariantChecker`. Nothing here chooses *what* happens
next; that is `schedule.Simulation` (random) or a scenario test (scripted), both through
the same public methods, so a scenario exercises exactly the code a random run does.

The member's Ready loop is deliberately not atomic: with some probability a member
takes a Ready and finishes it (persist, send, apply, advance) only some time later while
new messages keep arriving, as a real member does when it fsyncs off the event loop; a
crash in between loses that Ready, as a power cut loses an unsynced write.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftkv.raft import Config, RaftError, RawNode
from raftkv.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
)

from .invariants import InvariantChecker, InvariantViolation
from .network import InFlight, Network, NetworkParams
from .statemachine import HashStateMachine
from .storage import DurableStore
from .trace import Trace, fmt_entries, fmt_msg

TICK = 10
"""Time units per Raft tick."""

_EV_TICK = 0
_EV_DELIVER = 1
_EV_READY = 2
_EV_ADVANCE = 3
_EV_CALL = 4
_EV_SNAP_STATUS = 5


@dataclass(frozen=True, slots=True)
class CoreKnobs:
    """The Config fields the simulator varies per schedule (the rest are fixed)."""

    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    snapshot_catchup_entries: int = 5000
    max_promote_lag: int = 1000


@dataclass(slots=True)
class Timing:
    """How a member's event loop interleaves with its Ready processing."""

    defer_ready: float = 0.0
    """Probability that a member handles its Ready only some time after an input."""
    async_ready: float = 0.0
    """Probability that a taken Ready is finished (persisted, advanced) only later, with
    inputs stepped in between; a crash before that loses it."""
    max_ready_delay: int = 6
    tick_jitter: int = 1
    """Each member's tick interval is TICK +- this, so clocks drift apart."""
    report_unreachable: float = 0.3
    """Probability that the transport reports a failed delivery to the sender."""


@dataclass(slots=True)
class Stats:
    proposals: int = 0
    proposals_refused: int = 0
    proposals_dropped_by_leader: int = 0
    reads: int = 0
    reads_served: int = 0
    elections: int = 0
    crashes: int = 0
    restarts: int = 0
    compactions: int = 0
    snapshots_sent: int = 0
    snapshots_installed: int = 0
    conf_changes_proposed: int = 0
    conf_changes_committed: int = 0
    transfers: int = 0
    partitions: int = 0
    entries_applied: int = 0
    events: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def merge(self, other: Stats) -> None:
        for f in dataclasses.fields(self):
            if f.name == "errors":
                for k, v in other.errors.items():
                    self.errors[k] = self.errors.get(k, 0) + v
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(slots=True)
class Host:
    """One member id: its durable store survives crashes, everything else does not."""

    id: int
    store: DurableStore = field(default_factory=DurableStore)
    raw: RawNode | None = None
    sm: HashStateMachine = field(default_factory=HashStateMachine)
    incarnation: int = 0
    stopped: bool = False
    """Removed from the cluster and shut down for good."""
    ready_scheduled: bool = False
    inflight: Ready | None = None
    inflight_voter: bool = False
    voter_since_ready: bool = False
    """Was a voter at some point since its last Ready was taken (a vote request in the
    next Ready may stem from any moment in that window)."""
    reads: list[ReadState] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.raw is not None


class Cluster:
    def __init__(
        self,
        seed: int,
        n_nodes: int,
        *,
        knobs: CoreKnobs | None = None,
        net: NetworkParams | None = None,
        timing: Timing | None = None,
        trace: Trace | None = None,
    ) -> None:
        self.seed = seed
        self.knobs = knobs or CoreKnobs()
        self.timing = timing or Timing()
        self.trace = trace or Trace()
        self.rng = random.Random(f"{seed}/cluster")
        self.network = Network(random.Random(f"{seed}/network"), net or NetworkParams())
        self.checker = InvariantChecker()
        self.stats = Stats()
        self.now = 0
        self._seq = 0
        self._events: list[tuple[int, int, int, int, int, Any]] = []
        self.hosts: dict[int, Host] = {}
        self.purged: set[tuple[int, int]] = set()
        """(member, incarnation) whose in-flight messages died with it."""
        self.watched: dict[bytes, int] = {}
        """Data of proposals someone waits for -> index where it was first applied."""
        self._reads = 0
        self.read_log: list[tuple[int, ReadState]] = []
        """Every ReadState handed out, with the member that got it."""
        self._removals_seen = 0
        self._stop_pending: dict[int, int] = {}
        """Removed member -> index of its removal, until it may be shut down."""
        self.n_bootstrap = n_nodes
        voters = list(range(1, n_nodes + 1))
        for i in voters:
            h = self.hosts[i] = Host(i)
            self._start(h, RawNode.bootstrap(self._config(h), voters=voters), bootstrap=True)

    # --- construction helpers ----------------------------------------------------

    def _config(self, h: Host) -> Config:
        k = self.knobs
        node_seed = random.Random(f"{self.seed}/node/{h.id}/{h.incarnation + 1}").getrandbits(62)
        return Config(
            id=h.id,
            seed=node_seed,
            election_tick=k.election_tick,
            heartbeat_tick=k.heartbeat_tick,
            pre_vote=k.pre_vote,
            check_quorum=k.check_quorum,
            max_size_per_msg=k.max_size_per_msg,
            max_inflight_msgs=k.max_inflight_msgs,
            snapshot_catchup_entries=k.snapshot_catchup_entries,
            max_promote_lag=k.max_promote_lag,
        )

    def _start(self, h: Host, raw: RawNode, bootstrap: bool = False) -> None:
        h.raw = raw
        h.incarnation += 1
        h.ready_scheduled = False
        h.inflight = None
        h.voter_since_ready = h.id in raw.conf_state.voters
        h.reads = []
        first = self.rng.randint(1, TICK)
        self._push(self.now + first, _EV_TICK, h.id, h.incarnation, None)
        if bootstrap:
            # A real member persists its bootstrap state before it serves anything;
            # a cluster whose every member lost it would be a different cluster.
            self._drive(h, force_sync=True)
        else:
            self._after_input(h)

    def _push(self, at: int, kind: int, node: int, inc: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, kind, node, inc, payload))

    def call_at(self, at: int, fn: Callable[[], None]) -> None:
        """Run `fn` at time `at` (how schedules and scenarios script actions)."""
        self._push(max(at, self.now), _EV_CALL, 0, 0, fn)

    # --- queries -----------------------------------------------------------------

    def host(self, node: int) -> Host:
        return self.hosts[node]

    def raw(self, node: int) -> RawNode:
        r = self.hosts[node].raw
        assert r is not None, f"member {node} is down"
        return r

    def live(self) -> list[int]:
        return [i for i, h in self.hosts.items() if h.raw is not None]

    def crashed(self) -> list[int]:
        return [i for i, h in self.hosts.items() if h.raw is None and not h.stopped]

    def leader(self) -> int | None:
        """The live member that is leader in the highest term, if any."""
        best: tuple[int, int] | None = None
        for i, h in self.hosts.items():
            r = h.raw
            if r is not None and r.role == Role.LEADER and (best is None or r.term > best[0]):
                best = (r.term, i)
        return None if best is None else best[1]

    def committed_conf(self) -> ConfState:
        return self.checker.latest_conf

    # --- the event loop ----------------------------------------------------------

    def step(self) -> bool:
        """Process one event; False when nothing is left to happen."""
        if not self._events:
            return False
        at, _, kind, node, inc, payload = heapq.heappop(self._events)
        self.now = at
        self.stats.events += 1
        if kind == _EV_DELIVER:
            self._deliver(payload)
        elif kind == _EV_TICK:
            h = self.hosts[node]
            if h.raw is not None and h.incarnation == inc:
                h.raw.tick()
                self._after_input(h)
                j = self.timing.tick_jitter
                nxt = TICK + (self.rng.randint(-j, j) if j else 0)
                self._push(self.now + nxt, _EV_TICK, node, inc, None)
        elif kind == _EV_READY:
            h = self.hosts[node]
            if h.raw is not None and h.incarnation == inc:
                h.ready_scheduled = False
                self._drive(h)
        elif kind == _EV_ADVANCE:
            h = self.hosts[node]
            if h.raw is not None and h.incarnation == inc and h.inflight is payload:
                rd = h.inflight
                h.inflight = None
                self._complete(h, rd, h.inflight_voter)
                self._drive(h)
        elif kind == _EV_SNAP_STATUS:
            to, ok = payload
            self._report_snapshot(node, inc, to, ok)
        else:
            payload()
        return True

    def run_until(self, pred: Callable[[], bool], timeout: int) -> bool:
        """Step until `pred()` holds (checked after every event) or `timeout` time units
        pass; returns whether it held."""
        deadline = self.now + timeout
        while self._events and self._events[0][0] <= deadline:
            self.step()
            if pred():
                return True
        self.now = max(self.now, deadline)
        return pred()

    def run_for(self, duration: int) -> None:
        deadline = self.now + duration
        while self._events and self._events[0][0] <= deadline:
            self.step()
        self.now = max(self.now, deadline)

    def run_ticks(self, ticks: int) -> None:
        self.run_for(ticks * TICK)

    # --- inputs ------------------------------------------------------------------

    def _after_input(self, h: Host) -> None:
        raw = h.raw
        assert raw is not None
        if h.id in raw.conf_state.voters:
            h.voter_since_ready = True
        self.checker.observe_role(h.id, raw.role, raw.term, raw.conf_state, h.store, False)
        if h.ready_scheduled or h.inflight is not None:
            return
        t = self.timing
        if t.defer_ready and self.rng.random() < t.defer_ready:
            h.ready_scheduled = True
            self._push(
                self.now + self.rng.randint(1, t.max_ready_delay),
                _EV_READY,
                h.id,
                h.incarnation,
                None,
            )
            return
        self._drive(h)

    def _input(self, node: int, fn: Callable[[RawNode], None]) -> RaftError | None:
        """Feed one input to a live member; a typed refusal is returned, not raised."""
        h = self.hosts[node]
        raw = h.raw
        assert raw is not None
        err: RaftError | None = None
        try:
            fn(raw)
        except RaftError as exc:
            err = exc
            self.stats.errors[exc.code] = self.stats.errors.get(exc.code, 0) + 1
        self._after_input(h)
        return err

    def propose(self, node: int, data: bytes) -> RaftError | None:
        self.checker.proposed.add(data)
        self.stats.proposals += 1
        err = self._input(node, lambda r: r.propose(data))
        self.trace.add(self.now, _fmt_call, node, f"propose {data!r}", err)
        if err is not None:
            self.stats.proposals_refused += 1
        return err

    def read_index(self, node: int) -> tuple[bytes, RaftError | None]:
        self._reads += 1
        ctx = f"read{self._reads}".encode()
        required = self.checker.max_known_commit
        for h in self.hosts.values():
            if h.raw is not None and h.raw.commit > required:
                required = h.raw.commit
        self.checker.on_read_call(ctx, node, required)
        self.stats.reads += 1
        err = self._input(node, lambda r: r.read_index(ctx))
        self.trace.add(self.now, _fmt_call, node, f"read_index {ctx!r} (>= {required})", err)
        return ctx, err

    def transfer_leader(self, node: int, to: int) -> RaftError | None:
        self.stats.transfers += 1
        err = self._input(node, lambda r: r.transfer_leader(to))
        self.trace.add(self.now, _fmt_call, node, f"transfer_leader to {to}", err)
        return err

    def campaign(self, node: int) -> RaftError | None:
        err = self._input(node, lambda r: r.campaign())
        self.trace.add(self.now, _fmt_call, node, "campaign", err)
        return err

    def propose_conf_change(self, node: int, cc: ConfChange) -> RaftError | None:
        self.stats.conf_changes_proposed += 1
        err = self._input(node, lambda r: r.propose_conf_change(cc))
        self.trace.add(self.now, _fmt_call, node, f"conf change {cc.type.name} {cc.node_id}", err)
        return err

    def compact(self, node: int, index: int | None = None) -> int | None:
        """Snapshot the member's state machine at `index` (default: a random applied
        index above its snapshot) and compact; returns the index or None."""
        h = self.hosts[node]
        raw = h.raw
        assert raw is not None
        lo, hi = h.store.snap_index + 1, h.sm.applied
        if index is None:
            if hi < lo:
                return None
            index = self.rng.randint(max(lo, hi - 20), hi)
        if index not in h.sm.history:
            return None
        data = h.sm.state_at(index)
        try:
            snap = raw.compact(index, data)
        except RaftError as exc:
            self.stats.errors[exc.code] = self.stats.errors.get(exc.code, 0) + 1
            self.trace.add(self.now, _fmt_call, node, f"compact({index})", exc)
            return None
        self.checker.on_compact(node, snap, index, data)
        h.store.compact(snap)
        self.stats.compactions += 1
        self.trace.add(self.now, _fmt_call, node, f"compact({index})", None)
        self._after_input(h)
        return index

    # --- failures ----------------------------------------------------------------

    def partition(self, groups: list[list[int]]) -> None:
        self.network.partition(groups)
        self.stats.partitions += 1
        self.trace.note(self.now, f"PARTITION {groups}")

    def block(self, sender: int, receiver: int) -> None:
        """Drop every message from `sender` to `receiver` (one direction only)."""
        self.network.blocked.add((sender, receiver))
        self.trace.note(self.now, f"BLOCK {sender}->{receiver}")

    def heal(self) -> None:
        self.network.heal()
        self.trace.note(self.now, "HEAL")

    def crash(self, node: int, purge_outgoing: bool = False) -> None:
        """Power cut: the RawNode and every Ready not yet persisted are gone."""
        h = self.hosts[node]
        assert h.raw is not None
        h.raw = None
        h.inflight = None
        h.ready_scheduled = False
        h.reads = []
        if purge_outgoing:
            self.purged.add((node, h.incarnation))
        if h.store.lose_unsynced_commit(self.rng):
            self.checker.track(node).hard_state = h.store.hard_state
            self.trace.note(self.now, f"{node} lost unsynced commit: now {_fmt_hs(h.store)}")
        self.stats.crashes += 1
        self.trace.note(
            self.now, f"CRASH {node}{' (its in-flight messages lost)' if purge_outgoing else ''}"
        )

    def restart(self, node: int) -> None:
        """Recover from durable storage, as a member does after a crash (raftexample:
        a fresh node if there is no WAL yet, else RestartNode)."""
        h = self.hosts[node]
        assert h.raw is None
        assert not h.stopped
        st = h.store
        cfg = self._config(h)
        if st.empty:
            raw = RawNode.join(cfg)
        else:
            raw = RawNode.restart(cfg, st.hard_state, st.snapshot, st.restart_entries())
        h.sm = HashStateMachine.from_snapshot(st.snapshot)
        self.checker.on_restart(node, st, raw.applied, raw.commit)
        self.stats.restarts += 1
        self.trace.note(
            self.now,
            f"RESTART {node} hs={_fmt_hs(st)} snap={st.snap_index} "
            f"log={st.first_index}..{st.last_index}",
        )
        self._start(h, raw)

    def add_member(self, node: int) -> None:
        """Start an empty member that waits to be added (RawNode.join)."""
        assert node not in self.hosts
        h = self.hosts[node] = Host(node)
        self.trace.note(self.now, f"JOIN {node} (empty member started)")
        self._start(h, RawNode.join(self._config(h)))

    def stop(self, node: int) -> None:
        """Shut a removed member down for good."""
        h = self.hosts[node]
        h.raw = None
        h.inflight = None
        h.stopped = True
        self.trace.note(self.now, f"STOP {node} (removed)")

    # --- the wire ----------------------------------------------------------------

    def _send(self, h: Host, m: Message) -> None:
        delays = self.network.fate(m)
        if not delays:
            self.trace.add(self.now, _fmt_drop, m)
            if m.type == MessageType.SNAP:
                self._push(
                    self.now + self.rng.randint(1, TICK),
                    _EV_SNAP_STATUS,
                    h.id,
                    h.incarnation,
                    (m.to, False),
                )
            return
        for k, d in enumerate(delays):
            msg = m if k == 0 else dataclasses.replace(m)
            self._push(self.now + d, _EV_DELIVER, m.to, 0, InFlight(msg, h.incarnation, k > 0))

    def _deliver(self, f: InFlight) -> None:
        m = f.msg
        to = self.hosts.get(m.to)
        ok = (
            to is not None
            and to.raw is not None
            and self.network.connected(m.sender, m.to)
            and (m.sender, f.sender_incarnation) not in self.purged
        )
        if not ok:
            self.trace.add(self.now, _fmt_lost, m)
            if not f.copy:
                if m.type == MessageType.SNAP:
                    self._report_snapshot(m.sender, f.sender_incarnation, m.to, False)
                elif self.rng.random() < self.timing.report_unreachable:
                    s = self.hosts[m.sender]
                    if s.raw is not None and s.incarnation == f.sender_incarnation:
                        self._input(m.sender, lambda r: r.report_unreachable(m.to))
            return
        assert to is not None
        self.trace.add(self.now, _fmt_deliver, m)
        if m.type == MessageType.SNAP:
            self.stats.snapshots_sent += 1
        self._input(to.id, lambda r: r.step(m))
        if m.type == MessageType.SNAP and not f.copy:
            self._report_snapshot(m.sender, f.sender_incarnation, m.to, True)

    def _report_snapshot(self, sender: int, inc: int, to: int, ok: bool) -> None:
        s = self.hosts.get(sender)
        if s is not None and s.raw is not None and s.incarnation == inc:
            self._input(sender, lambda r: r.report_snapshot(to, ok))

    # --- the Ready loop ----------------------------------------------------------

    def _drive(self, h: Host, force_sync: bool = False) -> None:
        raw = h.raw
        assert raw is not None
        if h.inflight is not None:
            return
        t = self.timing
        while raw.has_ready():
            was_voter = h.voter_since_ready or h.id in raw.conf_state.voters
            rd = raw.ready()
            h.voter_since_ready = h.id in raw.conf_state.voters
            if not force_sync and t.async_ready and self.rng.random() < t.async_ready:
                h.inflight = rd
                h.inflight_voter = was_voter
                self._push(
                    self.now + self.rng.randint(1, t.max_ready_delay),
                    _EV_ADVANCE,
                    h.id,
                    h.incarnation,
                    rd,
                )
                return
            self._complete(h, rd, was_voter)
        self._quiesced(h)

    def _complete(self, h: Host, rd: Ready, was_voter: bool) -> None:
        """Steps 1-4 of the Ready contract, then advance."""
        raw = h.raw
        assert raw is not None
        ck = self.checker
        st = h.store
        node = h.id
        # 1. persist: snapshot, entries, hard state.
        if rd.snapshot is not None:
            st.install_snapshot(rd.snapshot)
        if rd.entries:
            st.append(rd.entries)
        if rd.hard_state is not None:
            st.hard_state = rd.hard_state
        if rd.must_sync:
            st.synced_commit = st.hard_state.commit  # the fsync covers earlier records too
        ck.on_persist(node, st, rd.entries, rd.hard_state, rd.snapshot)
        if rd.entries or rd.hard_state is not None or rd.snapshot is not None:
            self.trace.add(self.now, _fmt_persist, node, rd)
        # 2. send.
        for m in rd.messages:
            ck.on_send(node, m, st, was_voter)
            self._send(h, m)
        # 3. install the snapshot, apply committed entries.
        sm = h.sm
        if rd.snapshot is not None:
            ck.on_install_snapshot(node, sm, rd.snapshot)
            sm.restore(rd.snapshot)
            self.stats.snapshots_installed += 1
        for e in rd.committed_entries:
            ck.on_apply(node, sm, e, st)
            sm.apply(e)
            ck.after_apply(node, sm, e)
            self._on_applied(h, e)
        if rd.committed_entries:
            self.stats.entries_applied += len(rd.committed_entries)
            self.trace.add(self.now, _fmt_apply, node, rd.committed_entries)
        # 4. reads: check the index now, serve once applied.
        for rs in rd.read_states:
            ck.on_read_state(node, rs)
            h.reads.append(rs)
            self.read_log.append((node, rs))
            self.trace.add(
                self.now, _fmt_call, node, f"ReadState {rs.request_ctx!r} at {rs.index}", None
            )
        if h.reads:
            keep = [rs for rs in h.reads if rs.index > sm.applied]
            self.stats.reads_served += len(h.reads) - len(keep)
            h.reads = keep
        if rd.dropped_proposals:
            self.stats.proposals_dropped_by_leader += len(rd.dropped_proposals)
        if rd.soft_state is not None:
            self.trace.add(
                self.now,
                _fmt_call,
                node,
                f"is {rd.soft_state.role} (leader {rd.soft_state.leader}, term {raw.term})",
                None,
            )
            if rd.soft_state.role == Role.LEADER:
                self.stats.elections += 1
        raw.advance(rd)
        # Changes beyond the bootstrap ones (one ADD_NODE per initial voter).
        self.stats.conf_changes_committed = len(ck.conf_index) - 1 - self.n_bootstrap
        self._check_stop_removed()

    def _quiesced(self, h: Host) -> None:
        """Everything the member did is durable and applied: state and storage agree."""
        raw = h.raw
        assert raw is not None
        ck = self.checker
        ck.observe_role(h.id, raw.role, raw.term, raw.conf_state, h.store, True)
        commit = raw.commit
        if commit != max(h.store.hard_state.commit, h.store.snap_index):
            raise InvariantViolation(
                "api",
                f"member {h.id} has commit {commit} in memory but persisted "
                f"{h.store.hard_state.commit} after handling all its Readys",
            )
        if raw.applied != h.sm.applied:
            raise InvariantViolation(
                "api",
                f"member {h.id} says applied={raw.applied} but handed out entries up to "
                f"{h.sm.applied}",
            )
        ck.check_conf(h.id, raw.conf_state, commit)

    def _on_applied(self, h: Host, e: Entry) -> None:
        if self.watched and e.type == EntryType.NORMAL and self.watched.get(e.data) == 0:
            self.watched[e.data] = e.index

    # --- removed members ---------------------------------------------------------

    def _check_stop_removed(self) -> None:
        """A removed member is shut down once every remaining voter has durably learned
        that its removal committed (the operator deletes the pod after the member list
        says it is gone). Until then it may still be needed: with membership effective
        at commit, a voter that has not learned the commit still counts it."""
        ck = self.checker
        while self._removals_seen < len(ck.removed):
            index, member = ck.removed[self._removals_seen]
            self._removals_seen += 1
            if member in self.hosts and not self.hosts[member].stopped:
                self._stop_pending[member] = index
        if not self._stop_pending:
            return
        for member, index in list(self._stop_pending.items()):
            remaining = ck.conf_at(index).voters
            if all(
                self.hosts[v].stopped
                or max(self.hosts[v].store.synced_commit, self.hosts[v].store.snap_index) >= index
                for v in remaining
                if v in self.hosts
            ):
                del self._stop_pending[member]
                delay = self.rng.randint(0, 20 * TICK)
                self.call_at(
                    self.now + delay, functools.partial(self._stop_if_still_removed, member)
                )

    def _stop_if_still_removed(self, member: int) -> None:
        h = self.hosts[member]
        if not h.stopped:
            self.stop(member)


def _fmt_hs(st: DurableStore) -> str:
    hs = st.hard_state
    return f"(t{hs.term} v{hs.vote} c{hs.commit})"


def _fmt_call(node: int, what: str, err: RaftError | None) -> str:
    s = f"n{node}: {what}"
    if err is not None:
        s += f" -> {type(err).__name__}({err.code})"
    return s


def _fmt_deliver(m: Message) -> str:
    return f"  deliver {fmt_msg(m)}"


def _fmt_drop(m: Message) -> str:
    return f"  DROP    {fmt_msg(m)}"


def _fmt_lost(m: Message) -> str:
    return f"  LOST    {fmt_msg(m)} (partitioned, down or purged)"


def _fmt_persist(node: int, rd: Ready) -> str:
    s = f"n{node}: persist"
    if rd.snapshot is not None:
        md = rd.snapshot.metadata
        s += f" snap[{md.index}/t{md.term}]"
    s += fmt_entries(rd.entries)
    if rd.hard_state is not None:
        hs = rd.hard_state
        s += f" hs(t{hs.term} v{hs.vote} c{hs.commit})"
    return s


def _fmt_apply(node: int, ents: list[Entry]) -> str:
    return f"n{node}: apply {ents[0].index}..{ents[-1].index}"
