"""The node loop: one asyncio task that drives the Raft core for this member.

Inputs (peer messages, ticks, client writes and reads) are queued by whoever produces
them and drained by the loop, which then takes Ready batches from the core and handles
each strictly in order: persist (WAL group commit, off the event loop), send, apply,
advance. While one Ready is being persisted, new inputs keep queueing, so the next
Ready carries all of them: under load every fsync, append message and apply pass covers
many client requests. That batching, not clever code, is where throughput comes from.

`Node` is the member's facade (the API and tests use it) and owns the loop; the parts
with one job each live beside it: `bootstrap` (how the member starts, its identity,
discovery), `apply` (committed entries by kind), `waiters` (everyone waiting on the
loop), `state_codec` (the data of its Raft snapshots) and `status` (`MemberStatus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..kv.alarm import AlarmAction, AlarmRequest, AlarmType
from ..kv.lease.lessor import TimeToLive, min_ttl_for
from ..kv.machine import EPHEMERAL_ID_PREFIX, Outcome, StateMachine
from ..kv.mvcc.kv import Event
from ..kv.proposal import (
    CompactRequest,
    LeaseRevokeRequest,
    NoopRequest,
    Proposal,
    request_id_of,
)
from ..kv.quota import consumes_space, cost
from ..kv.watch.hub import WatchHub
from ..metrics import Metrics, RaftGauges, StoreGauges
from ..raft import (
    NONE,
    ConfChange,
    Entry,
    Message,
    MessageType,
    RaftError,
    RawNode,
    Ready,
    Role,
    Snapshot,
)
from ..raft.errors import NotLeader
from ..storage import open_storage
from ..storage.recovery import RecoveredState
from ..transport import PeerAuth, Transport
from . import bootstrap
from . import errors as E
from .apply import Applier, stable_prefix
from .bootstrap import StartKind
from .compactor import AutoCompactor
from .config import ServerConfig
from .membership import (
    MemberInfo,
    Registry,
    best_transfer_target,
    check_serving,
    encode_attrs,
    encode_attrs_v2,
    scheme_changed,
    was_removed,
)
from .meta import MemberMeta
from .state_codec import decode_state, encode_state
from .status import MemberStatus
from .waiters import Waiters

log = logging.getLogger("raftkv.node")


@dataclass
class NodeStats:
    proposals_pending: int = 0
    leader_changes: int = 0
    started_at: float = field(default_factory=time.monotonic)


class Node:
    def __init__(self, cfg: ServerConfig, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.kv = StateMachine(
            clock=time.monotonic,
            min_lease_ttl=min_ttl_for(cfg.election_ticks, cfg.tick_ms),
            max_txn_ops=cfg.max_txn_ops,
        )
        self.watch = WatchHub(
            lambda start: self.kv.mvcc.events(start),
            lambda: self.kv.revision,
            progress_interval=cfg.watch_progress_interval,
            max_lag_revisions=cfg.watch_max_lag_revisions,
            max_buffered_events=cfg.watch_max_buffered_events,
        )
        self.watch_signal = asyncio.Event()
        """Set (and at once cleared) whenever watchers may have something to send;
        every open watch stream waits on it."""
        self._watch_waiters: set[asyncio.Event] = set()
        self._lease_primary = False
        self._watch_dirty = False
        self._compactor = AutoCompactor.from_config(
            cfg.auto_compaction_mode, cfg.auto_compaction_retention
        )
        self.registry = Registry()
        self.raw: RawNode | None = None
        self.storage: RecoveredState | None = None
        self.transport: Transport | None = None
        self.member_id = 0
        self.removed = False
        self.removed_by_peer = False
        self.joining = False
        self.stopping = False
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="raftkv-io")
        self._snap_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raftkv-snap")
        self._inbox: list[Message] = []
        self._ticks = 0
        self._proposals: list[tuple[bytes, bytes]] = []  # (request id, data)
        self.waiters = Waiters()
        self._applier = Applier(
            self.kv,
            self.waiters,
            registry=lambda: self.registry,
            member_id=lambda: self.member_id,
            on_peers_changed=self._sync_peers,
            on_removed=self._mark_removed,
            on_committed=self.metrics.proposals_committed.inc,
            on_events=self._on_events,
        )
        self._read_seq = itertools.count(1)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._snapshotting = False
        self._last_snapshot_index = 0
        # Members apply the same entries at about the same time, so with one fixed
        # interval they would all snapshot at once, and on shared cores the leader and
        # both followers would slow down together. A per-member phase (up to half an
        # interval, for the first snapshot only; later ones keep the spacing) spreads
        # them out, so a quorum is usually not busy snapshotting.
        self._first_snapshot_done = False
        self._leader = NONE
        self._leader_seen = NONE
        self._published = False
        self.stats = NodeStats()
        self.on_removed: Callable[[], None] = lambda: None
        self._known_peers: set[int] = set()
        self.quota = cfg.quota_bytes
        """The space quota (0: none): a write that would take the state machine past it
        raises NOSPACE through Raft and is refused (`kv.alarm`, `_enforce_quota`)."""
        self._quota_lock = asyncio.Lock()
        self.etcd_url = ""
        """The etcd API URL this member publishes for etcd's MemberList
        (`advertise_etcd`); "" while the etcd API is not served."""

    # --- start and stop ----------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        meta = MemberMeta.load(cfg.data_dir)
        storage = await loop.run_in_executor(
            self._executor,
            lambda: open_storage(
                cfg.data_dir,
                on_fsync=self.metrics.wal_fsync.observe,
                on_snapshot_save=self.metrics.snapshot_save.observe,
            ),
        )
        self.storage = storage
        plan = bootstrap.plan_start(cfg, meta, bootstrap.has_raft_state(storage))
        if plan.kind is StartKind.RESTART:
            self._restart(plan.member_id, storage)
        elif plan.kind is StartKind.JOIN:
            self._join_as(plan.member_id)
        elif plan.kind is StartKind.DISCOVER:
            self.joining = True
            self._tasks = [asyncio.create_task(self._discover(), name="raftkv-discovery")]
            log.info("waiting to be added as a learner with peer URL %s", cfg.peer_url)
            return
        else:
            self.member_id = plan.member_id
            self.raw = bootstrap.bootstrap(cfg, plan.member_id)
            log.info("bootstrapping member %d of a new cluster", plan.member_id)
        await self._start_raft()

    def _restart(self, member_id: int, storage: RecoveredState) -> None:
        self.member_id = member_id
        if storage.snapshot is not None:
            self._install_snapshot_data(storage.snapshot)
            self._last_snapshot_index = storage.snapshot.metadata.index
        self.raw = bootstrap.restart(self.cfg, member_id, storage)
        bootstrap.check_not_removed(
            member_id, self.registry, storage.entries, storage.hard_state.commit
        )
        log.info("restarted member %d from %s", member_id, self.cfg.data_dir)

    def _join_as(self, member_id: int) -> None:
        self.member_id = member_id
        self.raw = bootstrap.join(self.cfg, member_id)
        log.info("member %d waiting to be added to the cluster", member_id)

    async def _discover(self) -> None:
        """Learn our id from the cluster (see `bootstrap.discover_member_id`), then
        start as that learner."""
        self._join_as(await bootstrap.discover_member_id(self.cfg))
        self.joining = False
        await self._start_raft()

    async def _start_raft(self) -> None:
        cfg = self.cfg
        self.metrics.watch_raft(self._gauges)
        self.metrics.watch_store(self._store_gauges)
        secret = cfg.peer_secret
        if not secret:
            log.warning(
                "no --peer-secret set: peers authenticate with the cluster token only; "
                "set RAFTKV_PEER_SECRET for anything but local development"
            )
            secret = "token:" + cfg.cluster_id
        self.transport = Transport(
            self.member_id,
            PeerAuth(cfg.cluster_id, secret, cfg.peer_url),
            on_messages=self._on_messages,
            on_unreachable=self._on_unreachable,
            on_snapshot_sent=self._on_snapshot_sent,
            is_removed=lambda mid: was_removed(mid, self.registry),
            on_removed=self._on_told_removed,
            observe_rtt=lambda peer, s: self.metrics.peer_rtt.labels(peer=str(peer)).observe(s),
            on_peer_url=self._on_peer_url,
        )
        self._sync_peers()
        await self.transport.start()
        self._tasks += [
            asyncio.create_task(self._run(), name="raftkv-loop"),
            asyncio.create_task(self._ticker(), name="raftkv-ticker"),
        ]
        self._wake.set()

    async def stop(self) -> None:
        """Stop the loop and the transport and flush storage; bounded in time."""
        self.stopping = True
        self._notify_watchers()  # open watch streams end
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self.transport is not None:
            await self.transport.stop()
        self.waiters.fail_all(E.shutting_down())
        if self.storage is not None:
            storage = self.storage
            await asyncio.get_running_loop().run_in_executor(self._executor, storage.close)
            self.storage = None
        self._executor.shutdown(wait=True)
        self._snap_executor.shutdown(wait=True)

    async def transfer_leadership_away(self, timeout: float) -> bool:
        """Before a leader stops: hand over to the most up-to-date voter (thesis §3.10)
        so the cluster does not wait an election timeout for a new leader."""
        raw = self.raw
        if raw is None or raw.role != Role.LEADER:
            return True
        target = self._best_transfer_target()
        if target == NONE:
            return False
        try:
            await self.transfer_leader(target, timeout=timeout)
            return True
        except E.ApiError as exc:
            log.warning("leader transfer before stop failed: %s", exc.message)
            return False

    def _best_transfer_target(self) -> int:
        raw = self.raw
        assert raw is not None
        return best_transfer_target(self.member_id, raw.status().progress)

    # --- inputs --------------------------------------------------------------------

    def _on_messages(self, msgs: list[Message]) -> None:
        self._inbox.extend(msgs)
        self._wake.set()

    def _on_peer_url(self, peer: int, url: str) -> None:
        """A peer that dialled us said where it listens. The replicated registry stays
        the authority; this only fills the gap for a member that has just joined and
        has not yet replicated who its peers are."""
        info = self.registry.members.get(peer)
        if self.transport is not None and (info is None or not info.peer_urls):
            try:
                self.transport.set_peer(peer, url)
            except ValueError:
                log.warning("peer %d presented an invalid URL %r", peer, url)

    def _on_unreachable(self, peer: int) -> None:
        if self.raw is not None:
            self.raw.report_unreachable(peer)
            self._wake.set()

    def _on_snapshot_sent(self, peer: int, ok: bool) -> None:
        if self.raw is not None:
            self.raw.report_snapshot(peer, ok)
            self._wake.set()

    def _on_told_removed(self) -> None:
        if not self.removed and self._leader_seen == NONE:
            # Nobody has led us since we started: we are a removed identity that was
            # started again, and must refuse to run (see serve()).
            self.removed_by_peer = True
            log.error("a peer reports that member %d was removed from the cluster", self.member_id)
        self._mark_removed()

    async def _ticker(self) -> None:
        interval = self.cfg.tick_ms / 1000
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self._ticks += 1
            self._wake.set()
            self._on_tick()

    def _on_tick(self) -> None:
        """Leader-local clockwork: revoke expired leases, compact on schedule, and
        let the watchers' progress timers run."""
        now = time.monotonic()
        self.watch.tick(now)
        self._notify_watchers()
        raw = self.raw
        if raw is None or raw.role != Role.LEADER or self.stopping:
            return
        for lease_id in self.kv.expired_leases():
            self._propose_internal(LeaseRevokeRequest(lease_id))
        rev = self._compactor.due(now, self.kv.revision, self.kv.mvcc.compact_revision)
        if rev is not None:
            log.info("auto-compaction: compacting to revision %d", rev)
            self._propose_internal(CompactRequest(rev))

    def _propose_internal(self, body: CompactRequest | LeaseRevokeRequest) -> None:
        """A proposal of the member's own (lease expiry, auto-compaction): nobody
        waits for it; if it is lost, the next tick proposes it again."""
        rid = EPHEMERAL_ID_PREFIX + os.urandom(15)
        self._proposals.append((rid, Proposal(body, rid).encode()))
        self._wake.set()

    def _on_events(self, events: tuple[Event, ...]) -> None:
        self.watch.publish(events)
        self._watch_dirty = True

    def _flush_watch(self) -> None:
        """Wake the watch streams once per applied batch, not once per entry: under
        load a batch holds many revisions, and each stream then sends them in one
        write."""
        if self._watch_dirty:
            self._watch_dirty = False
            self._notify_watchers()

    def _notify_watchers(self) -> None:
        for ev in self._watch_waiters:
            ev.set()

    def add_watch_waiter(self) -> asyncio.Event:
        ev = asyncio.Event()
        self._watch_waiters.add(ev)
        return ev

    def remove_watch_waiter(self, ev: asyncio.Event) -> None:
        self._watch_waiters.discard(ev)

    def _drain_inputs(self) -> None:
        raw = self.raw
        assert raw is not None
        if self._ticks:
            n, self._ticks = self._ticks, 0
            for _ in range(min(n, 3 * self.cfg.election_ticks)):
                raw.tick()
        if self._inbox:
            inbox, self._inbox = self._inbox, []
            for m in inbox:
                try:
                    raw.step(m)
                except RaftError as exc:
                    log.warning("dropped message from %d: %s", m.sender, exc)
        if self._proposals:
            props, self._proposals = self._proposals, []
            self._propose(props)
        if self.waiters.has_reads():
            reads = self.waiters.take_reads()
            # Unique cluster-wide: the leader keys pending reads by context, so two
            # members' counters must never collide.
            ctx = self.member_id.to_bytes(8, "big") + next(self._read_seq).to_bytes(8, "big")
            try:
                raw.read_index(ctx)
                self.waiters.start_batch(ctx, reads)
            except RaftError as exc:
                self.waiters.fail_reads(reads, E.from_raft_error(exc))

    def _propose(self, props: list[tuple[bytes, bytes]]) -> None:
        raw = self.raw
        assert raw is not None
        try:
            before = raw.last_index
            raw.propose_batch([d for _, d in props])
        except RaftError as exc:
            err = E.from_raft_error(exc)
            for rid, _ in props:
                self.waiters.fail_write(rid, err)
            return
        if raw.role == Role.LEADER:
            # Remember which index each write landed at: if another entry is applied
            # there instead (a new leader overwrote ours), the write definitely failed.
            self.waiters.own(before + 1, (rid for rid, _ in props))

    # --- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        raw = self.raw
        assert raw is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._drain_inputs()
                while raw.has_ready():
                    rd = raw.ready()
                    await self._handle_ready(rd)
                    raw.advance(rd)
                    self._drain_inputs()
                self._maybe_publish()
                self._maybe_snapshot()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Storage failures end here: a member that cannot persist must not go
                # on acknowledging anything. Fail everything and stop the process.
                log.exception("node loop failed; stopping the member")
                self.waiters.fail_all(E.Unavailable("member failed", code="member_failed"))
                self.stopping = True
                self.on_removed()
                return

    async def _handle_ready(self, rd: Ready) -> None:
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state.leader)
        # Replication traffic leaves before our own fsync: the core counts the
        # leader's copy toward a quorum only after advance(), and followers ack only
        # what they persisted, so the two fsyncs overlap (thesis §10.2.1). Anything
        # that vouches for our own durable state (acks, votes) waits for the disk.
        early, late = _split_messages(rd.messages)
        if early and self.transport is not None:
            self.transport.send(early)
        committed = self._apply_stable(rd)
        self._flush_watch()
        # 1. persist
        await self._persist(rd)
        # 2. send
        if late and self.transport is not None:
            self.transport.send(late)
        # 3. install, apply
        if rd.snapshot is not None:
            self._install_snapshot_data(rd.snapshot)
            self._last_snapshot_index = rd.snapshot.metadata.index
            self.metrics.snapshots_received.inc()
            self._sync_peers()
        if committed:
            self._applier.apply(committed)
        for dropped in rd.dropped_proposals:
            rid = request_id_of(dropped)
            if rid:
                self.waiters.fail_write(
                    rid, E.Unavailable("the leader refused the write", code="proposal_dropped")
                )
        self._flush_watch()
        # 4. reads
        applied = self.kv.applied_index
        for rs in rd.read_states:
            self.waiters.read_state(rs.request_ctx, rs.index, applied)
        self.waiters.release_reads(applied)

    def _apply_stable(self, rd: Ready) -> list[Entry]:
        """Apply the committed entries that are already on our disk: they need not
        wait for this Ready's fsync. Returns the rest."""
        committed = rd.committed_entries
        if committed and rd.snapshot is None:
            assert self.raw is not None
            n = stable_prefix(committed, self.raw.stable_index)
            if n:
                self._applier.apply(committed[:n])
                committed = committed[n:]
        return committed

    async def _persist(self, rd: Ready) -> None:
        storage = self.storage
        assert storage is not None
        loop = asyncio.get_running_loop()
        if rd.snapshot is not None:
            snap = rd.snapshot
            await loop.run_in_executor(self._executor, storage.save_snapshot, snap)
        if rd.must_sync:
            # With nothing new to write this still waits for everything queued.
            await loop.run_in_executor(self._executor, storage.wal.save, rd.hard_state, rd.entries)
        elif rd.hard_state is not None:
            # Only the commit index moved: queue it for the next group commit (or the
            # close) instead of holding the loop for an fsync; see Ready.must_sync.
            storage.wal.submit(rd.hard_state, ())

    def _on_soft_state(self, leader: int) -> None:
        if leader != self._leader:
            if leader != NONE:
                self._leader_seen = leader
                self.metrics.leader_changes.inc()
                self.stats.leader_changes += 1
            self._leader = leader
            log.info("member %d: leader is now %s", self.member_id, leader or "unknown")
            self.waiters.leader_changed(leader)
        self._lease_role(leader)

    def _lease_role(self, leader: int) -> None:
        """Only the leader counts lease time; a new leader gives every lease its
        full TTL again, plus an election timeout (etcd's rule), so no lease expires
        early because leadership moved."""
        if leader == self.member_id and not self._lease_primary:
            self._lease_primary = True
            self.kv.promote(extend=self.cfg.election_ticks * self.cfg.tick_ms / 1000)
            self._compactor.reset(time.monotonic(), self.kv.revision)
        elif leader != self.member_id and self._lease_primary:
            self._lease_primary = False
            self.kv.demote()

    def _sync_peers(self) -> None:
        if self.transport is None or self.raw is None:
            return
        cs = self.raw.conf_state
        want = set(cs.members()) - {self.member_id}
        for mid in want:
            info = self.registry.members.get(mid)
            if info is not None and info.peer_urls:
                self.transport.set_peer(mid, info.peer_urls[0])
        for mid in list(self._known_peers):
            if mid not in want:
                self.transport.remove_peer(mid)
        self._known_peers = {m for m in want if m in self.registry.members}

    def _mark_removed(self) -> None:
        if self.removed:
            return
        self.removed = True
        log.warning("member %d was removed from the cluster; it no longer serves", self.member_id)
        self.waiters.fail_all(E.Gone(f"member {self.member_id} was removed from the cluster"))
        self.on_removed()

    def _maybe_publish(self) -> None:
        """Make our client URL and name known cluster-wide once we are a member, so any
        member can list it and forward requests to us when we lead."""
        raw = self.raw
        if self._published or raw is None or raw.leader == NONE or self.removed:
            return
        info = self.registry.members.get(self.member_id)
        if info is None:
            return
        want = MemberInfo(
            self.member_id,
            self.cfg.name,
            (self.cfg.peer_url,),
            (self.cfg.client_url,),
            (self.etcd_url,) if self.etcd_url else (),
        )
        if (
            info.client_urls == want.client_urls
            and info.name == want.name
            and (info.etcd_urls == want.etcd_urls or not want.etcd_urls)
            and not scheme_changed(info.peer_urls, want.peer_urls)
        ):
            self._published = True
            return
        try:
            raw.propose(encode_attrs(want))
            if want.etcd_urls:
                raw.propose(encode_attrs_v2(want))
            self._published = True
        except RaftError:
            pass

    # --- snapshots -----------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        raw = self.raw
        if (
            raw is None
            or self._snapshotting
            or raw.applied - self._last_snapshot_index
            < self.cfg.snapshot_count
            + (0 if self._first_snapshot_done else _snapshot_phase(self.member_id, self.cfg))
        ):
            return
        self._first_snapshot_done = True
        self._snapshotting = True
        asyncio.get_running_loop().create_task(self._snapshot())

    async def _snapshot(self) -> None:
        """Take a snapshot without stalling the loop for the whole dump: copy the state
        (cheap, shallow) now, serialize and fsync it in a thread."""
        raw = self.raw
        storage = self.storage
        assert raw is not None and storage is not None
        loop = asyncio.get_running_loop()
        try:
            with gc_paused():
                encode_sm = self.kv.snapshot_view()
            reg = self.registry.copy()
            index = self.kv.applied_index
            data = await loop.run_in_executor(
                self._snap_executor, lambda: encode_state(encode_sm(), reg)
            )
            if self.raw is None or self.storage is None:
                return
            snap = raw.compact(index, data)
            await loop.run_in_executor(self._snap_executor, storage.save_snapshot, snap)
            self._last_snapshot_index = index
            log.info("member %d: snapshot at index %d (%d bytes)", self.member_id, index, len(data))
        except RaftError as exc:
            log.warning("snapshot skipped: %s", exc)
        finally:
            self._snapshotting = False

    async def backup(self) -> tuple[int, bytes, str]:
        """A consistent copy of the state machine for `GET /v1/snapshot`: the bytes of
        the state-machine snapshot format at its applied index, and their SHA-256
        (hex). The state is captured here, on the loop, so it is one point in time;
        encoding and hashing run in the snapshot thread, as for `_snapshot`."""
        self._check_serving()
        with gc_paused():
            encode_sm = self.kv.snapshot_view()
        index = self.kv.applied_index

        def _dump() -> tuple[bytes, str]:
            data = encode_sm()
            return data, hashlib.sha256(data).hexdigest()

        try:
            data, digest = await asyncio.get_running_loop().run_in_executor(
                self._snap_executor, _dump
            )
        except RuntimeError:  # the executor is gone: we are stopping
            raise E.shutting_down() from None
        return index, data, digest

    def _install_snapshot_data(self, snap: Snapshot) -> None:
        kv_bytes, reg = decode_state(snap.data)
        self.kv.restore(kv_bytes)
        self.registry = reg
        self.watch.restored()
        self._notify_watchers()
        if self._lease_primary:
            self.kv.promote(extend=self.cfg.election_ticks * self.cfg.tick_ms / 1000)
        # The snapshot supersedes anything waiting on indexes it covers.
        self.waiters.fail_owners_through(snap.metadata.index, E.indeterminate())

    # --- client operations ----------------------------------------------------------

    def _check_serving(self) -> None:
        check_serving(
            joined=self.raw is not None,
            removed=self.removed,
            member_id=self.member_id,
            stopping=self.stopping,
        )

    async def write(self, cmd: Proposal) -> Outcome:
        """Propose a write and return once it is committed and applied here."""
        self._check_serving()
        if self.quota and self.kv.space.bytes + cost(cmd.body) > self.quota:
            await self._enforce_quota(cmd)
        rid = cmd.request_id
        fut = self.waiters.add_write(rid)
        self._proposals.append((rid, cmd.encode()))
        self.stats.proposals_pending += 1
        self._wake.set()
        try:
            return await asyncio.wait_for(fut, self.cfg.request_timeout)
        except TimeoutError:
            self.metrics.proposals_failed.inc()
            raise E.indeterminate() from None
        except E.ApiError:
            self.metrics.proposals_failed.inc()
            raise
        finally:
            self.stats.proposals_pending -= 1
            self.waiters.discard_write(rid, fut)

    def advertise_etcd(self, url: str) -> None:
        """The etcd API is served at `url`: publish it in the member registry (for
        every member's MemberList), once this member is in the cluster."""
        self.etcd_url = url
        self._published = False
        self._wake.set()

    async def measure_space(self) -> int:
        """The exact size of the state machine's snapshot, measured in the snapshot
        thread (the state is captured here, as for `_snapshot`); the running estimate
        is set from it."""
        space = self.kv.space
        with gc_paused():
            encode_sm = self.kv.snapshot_view()
        growth = space.growth
        try:
            size = len(
                await asyncio.get_running_loop().run_in_executor(self._snap_executor, encode_sm)
            )
        except RuntimeError:  # the executor is gone: we are stopping
            raise E.shutting_down() from None
        if self.kv.space is space:  # not replaced by a restored snapshot meanwhile
            space.rebase(size, growth)
        return size

    async def _enforce_quota(self, cmd: Proposal) -> None:
        """The estimate says `cmd` would exceed the quota: measure exactly (once at a
        time), and if it still would, raise NOSPACE through Raft first, as etcd's
        quotaKVServer does. The write is then proposed behind the alarm, so the state
        machine refuses it like every write after it, deterministically; a retry of
        a write that did commit (same request id) still gets its first answer."""
        body = cmd.body
        if not consumes_space(body) or self.kv.alarms.nospace:
            return
        need = cost(body)
        async with self._quota_lock:
            if self.kv.space.bytes + need <= self.quota:
                return  # another call measured meanwhile
            if await self.measure_space() + need <= self.quota:
                return
        log.warning(
            "member %d: a write of %d bytes would exceed the space quota of %d bytes "
            "(state machine ~%d bytes); raising the NOSPACE alarm",
            self.member_id,
            need,
            self.quota,
            self.kv.space.bytes,
        )
        alarm = AlarmRequest(AlarmAction.ACTIVATE, self.member_id, AlarmType.NOSPACE)
        try:
            await self.write(Proposal(alarm, EPHEMERAL_ID_PREFIX + os.urandom(15)))
        except E.ApiError as exc:  # the write that follows meets the same trouble
            log.warning("member %d: the NOSPACE alarm was not raised: %s", self.member_id, exc)

    async def update_member(self, info: MemberInfo) -> None:
        """Apply new attributes of a member through Raft (etcd's MemberUpdate: its
        peer URLs; fields left empty keep their values) and return once they are
        applied here; every member then dials it at the new URL (`_sync_peers`). The
        attributes entry carries no request id, so what is waited for is a no-op
        write proposed right behind it in the same batch: it commits after it, or,
        when leadership changed between them, without it, which the check after
        catches."""
        self._check_serving()
        self._proposals.append((EPHEMERAL_ID_PREFIX + os.urandom(15), encode_attrs(info)))
        await self.write(Proposal(NoopRequest(), EPHEMERAL_ID_PREFIX + os.urandom(15)))
        got = self.registry.members.get(info.id)
        if got is None or (info.peer_urls and got.peer_urls != info.peer_urls):
            raise E.Unavailable(
                f"the update of member {info.id} was lost to a leader change; retry",
                code="proposal_dropped",
            )

    async def lease_keepalive(self, lease_id: int) -> int:
        """Renew a lease on the leader (NotLeader elsewhere, which the API forwards);
        the granted TTL. The barrier first makes sure every committed revoke is
        applied here, so a lease that is gone cannot be renewed."""
        self._require_leader()
        await self.linearizable_barrier()
        self._require_leader()
        return self.kv.lessor.renew(lease_id, time.monotonic())

    async def lease_time_to_live(self, lease_id: int, *, keys: bool) -> TimeToLive:
        self._require_leader()
        await self.linearizable_barrier()
        self._require_leader()
        return self.kv.lessor.time_to_live(lease_id, time.monotonic(), keys=keys)

    def _require_leader(self) -> None:
        if not self._lease_primary or not self.is_leader():
            raise E.from_raft_error(NotLeader("not the leader"))

    async def linearizable_barrier(self) -> None:
        """Return once this member's state includes every write that completed before
        the call (ReadIndex, thesis §6.4): reads after it are linearizable."""
        self._check_serving()
        fut = self.waiters.add_read()
        self._wake.set()
        try:
            await asyncio.wait_for(fut, self.cfg.request_timeout)
        except TimeoutError:
            raise E.Unavailable(
                "could not confirm the read with a quorum in time", code="timeout"
            ) from None
        finally:
            self.waiters.discard_read(fut)

    # --- membership -------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.raw is not None and self.raw.role == Role.LEADER

    def leader_client_url(self) -> str | None:
        if self.raw is None or self.raw.leader == NONE:
            return None
        info = self.registry.members.get(self.raw.leader)
        if info is None or not info.client_urls:
            return None
        return info.client_urls[0]

    async def change_membership(self, cc: ConfChange) -> None:
        """Propose one configuration change on the leader and wait until it is applied
        here. Raises NotLeader (the API forwards) or a typed refusal."""
        self._check_serving()
        raw = self.raw
        assert raw is not None
        if raw.role != Role.LEADER:
            raise E.from_raft_error(NotLeader("not the leader"))
        try:
            raw.propose_conf_change(cc)
        except RaftError as exc:
            raise E.from_raft_error(exc) from exc
        index = raw.last_index
        fut = self.waiters.add_conf(index, cc)
        self._wake.set()
        try:
            await asyncio.wait_for(fut, self.cfg.request_timeout)
        except TimeoutError:
            raise E.indeterminate() from None
        finally:
            self.waiters.discard_conf(index, fut)

    async def transfer_leader(self, to: int, *, timeout: float | None = None) -> int:
        self._check_serving()
        raw = self.raw
        assert raw is not None
        if raw.role != Role.LEADER:
            raise E.from_raft_error(NotLeader("not the leader"))
        if to == self.member_id:
            return to
        fut = self.waiters.add_leader(lambda lead: lead == to)
        try:
            try:
                raw.transfer_leader(to)
            except RaftError as exc:
                raise E.from_raft_error(exc) from exc
            self._wake.set()
            return await asyncio.wait_for(fut, timeout or self.cfg.request_timeout)
        except TimeoutError:
            raise E.Unavailable(
                f"leadership did not move to {to} in time", code="timeout"
            ) from None
        finally:
            self.waiters.discard_leader(fut)

    # --- observation ------------------------------------------------------------------

    def _store_gauges(self) -> StoreGauges:
        mvcc = self.kv.mvcc
        w = self.watch.stats()
        return StoreGauges(
            keys=len(mvcc),
            revision=mvcc.revision,
            compact_revision=mvcc.compact_revision,
            history_size=mvcc.history_size,
            leases=len(self.kv.lessor),
            watchers=w.watchers,
            watch_streams=w.streams,
            watch_events_sent=w.events_sent,
            slow_watchers_cancelled=w.slow_cancelled,
            compacted_watchers_cancelled=w.compacted_cancelled,
            space_bytes=self.kv.space.bytes,
            quota_bytes=self.quota,
            alarms=tuple((a.alarm.name, a.member_id) for a in self.kv.alarms.get()),
        )

    def _gauges(self) -> RaftGauges:
        return self.status().gauges(self.stats.proposals_pending)

    def is_ready(self) -> bool:
        """A member that is in the configuration, knows a leader and has applied
        everything it knows to be committed."""
        raw = self.raw
        return (
            raw is not None
            and not self.removed
            and not self.stopping
            and self.member_id in raw.conf_state.members()
            and raw.leader != NONE
            and self.kv.applied_index >= raw.commit
        )

    def status(self) -> MemberStatus:
        raw = self.raw
        if raw is None:
            return MemberStatus.joining(self.cfg.name, self.cfg.cluster_id, self.cfg.peer_url)
        return MemberStatus.of(
            raw.status(),
            member_id=self.member_id,
            name=self.cfg.name,
            cluster_id=self.cfg.cluster_id,
            registry=self.registry,
            applied_index=self.kv.applied_index,
            snapshot_index=self._last_snapshot_index,
            keys=len(self.kv),
            removed=self.removed,
            pending_conf_index=raw.pending_conf_index,
        )


_EARLY = frozenset(
    {
        # The leader's replication traffic (its own copy counts only once persisted).
        MessageType.APP,
        MessageType.HEARTBEAT,
        MessageType.SNAP,
        MessageType.TIMEOUT_NOW,
        # Requests and answers that vouch for nothing on our disk.
        MessageType.PROP_FORWARD,
        MessageType.READ_INDEX,
        MessageType.READ_INDEX_RESP,
    }
)


def _split_messages(msgs: list[Message]) -> tuple[list[Message], list[Message]]:
    if not msgs:
        return msgs, msgs
    early = [m for m in msgs if m.type in _EARLY]
    if len(early) == len(msgs):
        return early, []
    return early, [m for m in msgs if m.type not in _EARLY]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while a snapshot view is captured on the loop: the view
    allocates a container per key, and with millions of objects alive a collection
    that those allocations trigger costs more than the capture itself (75 ms for a
    million versions without, up to 500 ms with)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _snapshot_phase(member_id: int, cfg: ServerConfig) -> int:
    """A deterministic, well-spread offset in [0, snapshot_count / 2) per member id."""
    return (member_id * 2654435761 % (1 << 32)) * (cfg.snapshot_count // 2) >> 32
