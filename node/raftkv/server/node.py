"""The node loop: one asyncio task that drives the Raft core for this member.

Inputs (peer messages, ticks, client writes and reads) are queued by whoever produces
them and drained by the loop, which then takes Ready batches from the core and handles
each strictly in order: persist (WAL group commit, off the event loop), send, apply,
advance. While one Ready is being persisted, new inputs keep queueing, so the next
Ready carries all of them: under load every fsync, append message and apply pass covers
many client requests. That batching, not clever code, is where throughput comes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import msgpack

from ..client import AsyncClient, RaftKVError
from ..kv.command import Command, CommandDecodeError
from ..kv.store import ApplyResult, KVStore
from ..metrics import Metrics, RaftGauges
from ..raft import (
    NONE,
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    Message,
    MessageType,
    RaftError,
    RawNode,
    Ready,
    Role,
    Snapshot,
    decode_conf_change,
)
from ..raft.errors import InvalidConfChange, NotLeader
from ..storage import open_storage
from ..storage.recovery import RecoveredState
from ..transport import PeerAuth, Transport
from . import errors as E
from .config import ServerConfig
from .membership import (
    MemberInfo,
    Registry,
    best_transfer_target,
    check_serving,
    decode_attrs,
    encode_attrs,
    validate_url,
)
from .meta import IdentityError, MemberMeta

log = logging.getLogger("raftkv.node")

SNAPSHOT_FORMAT = 1


class Removed(Exception):
    """This member was removed from the cluster; it must not serve."""


@dataclass
class _ReadBatch:
    futures: list[asyncio.Future[None]]
    index: int = -1


@dataclass
class _ConfWaiter:
    future: asyncio.Future[None]
    change: ConfChange


@dataclass
class NodeStats:
    proposals_pending: int = 0
    leader_changes: int = 0
    started_at: float = field(default_factory=time.monotonic)


class Node:
    def __init__(self, cfg: ServerConfig, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.kv = KVStore()
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
        self._write_waiters: dict[bytes, list[asyncio.Future[ApplyResult]]] = {}
        self._index_owner: dict[int, bytes] = {}
        self._conf_waiters: dict[int, _ConfWaiter] = {}
        self._read_waiters: list[asyncio.Future[None]] = []
        self._read_batches: dict[bytes, _ReadBatch] = {}
        self._reads_after_apply: deque[_ReadBatch] = deque()
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
        self._leader_waiters: list[tuple[Callable[[int], bool], asyncio.Future[int]]] = []
        self.stats = NodeStats()
        self.on_removed: Callable[[], None] = lambda: None
        self._known_peers: set[int] = set()

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
        has_state = storage.hard_state.term > 0 or bool(storage.entries) or storage.snapshot
        raft_cfg = self._raft_config
        if has_state:
            if meta is None:
                raise IdentityError(f"{cfg.data_dir} holds Raft state but no {META_FILE_NAME}")
            self._check_identity(meta)
            self.member_id = meta.member_id
            if storage.snapshot is not None:
                self._install_snapshot_data(storage.snapshot)
                self._last_snapshot_index = storage.snapshot.metadata.index
            self.raw = RawNode.restart(
                raft_cfg(meta.member_id), storage.hard_state, storage.snapshot, storage.entries
            )
            if meta.member_id in self.registry.removed or _removed_in_log(
                meta.member_id, storage.entries, storage.hard_state.commit
            ):
                raise IdentityError(
                    f"member {meta.member_id} was removed from the cluster; "
                    "wipe its data dir and add it again as a new member"
                )
            log.info("restarted member %d from %s", meta.member_id, cfg.data_dir)
        elif cfg.join:
            if meta is not None and cfg.member_id and meta.member_id != cfg.member_id:
                raise IdentityError(
                    f"{cfg.data_dir} belongs to member {meta.member_id}, not {cfg.member_id}"
                )
            mid = cfg.member_id or (meta.member_id if meta is not None else 0)
            if mid <= 0:
                if not cfg.discovery_endpoints:
                    raise ValueError("joining needs --member-id or --discovery-endpoints")
                self.joining = True
                self._tasks = [asyncio.create_task(self._discover(), name="raftkv-discovery")]
                log.info("waiting to be added as a learner with peer URL %s", cfg.peer_url)
                return
            self._join_as(mid)
        else:
            me = next((m for m in cfg.initial_cluster if m.name == cfg.name), None)
            if me is None:
                raise ValueError(f"member name {cfg.name!r} is not in the initial cluster")
            self.member_id = me.id
            MemberMeta(me.id, cfg.name, cfg.cluster_id).save(cfg.data_dir)
            contexts = {
                m.id: MemberInfo(m.id, m.name, (m.peer_url,)).encode() for m in cfg.initial_cluster
            }
            self.raw = RawNode.bootstrap(
                raft_cfg(me.id), [m.id for m in cfg.initial_cluster], contexts
            )
            log.info("bootstrapping member %d of a new cluster", me.id)
        await self._start_raft()

    def _join_as(self, member_id: int) -> None:
        self.member_id = member_id
        MemberMeta(member_id, self.cfg.name, self.cfg.cluster_id).save(self.cfg.data_dir)
        self.raw = RawNode.join(self._raft_config(member_id))
        log.info("member %d waiting to be added to the cluster", member_id)

    async def _discover(self) -> None:
        """Find our id: the learner the cluster added with our peer URL. A voter with
        our URL means our old identity is still in the configuration while our data
        dir is empty (a lost volume): taking it could lose committed entries, so we
        refuse and keep reporting no id until it is replaced."""
        own = validate_url(self.cfg.peer_url)
        warned = False
        async with AsyncClient(list(self.cfg.discovery_endpoints), timeout=3, retries=0) as cl:
            while True:
                try:
                    members = await cl.members()
                except (RaftKVError, OSError) as exc:
                    log.debug("discovery: %s", exc)
                    members = []
                for m in members:
                    if own not in {_norm(u) for u in m.peer_urls}:
                        continue
                    if m.learner:
                        log.info("discovered our member id %d (learner at %s)", m.id, own)
                        self._join_as(m.id)
                        self.joining = False
                        await self._start_raft()
                        return
                    if not warned:
                        log.warning(
                            "voter %d holds our peer URL but our data dir is empty: "
                            "refusing to take its identity; waiting to be replaced",
                            m.id,
                        )
                        warned = True
                await asyncio.sleep(1.0)

    async def _start_raft(self) -> None:
        cfg = self.cfg
        self.metrics.watch_raft(self._gauges)
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
            is_removed=lambda mid: mid in self.registry.removed,
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

    def _raft_config(self, member_id: int) -> Config:
        c = self.cfg
        return Config(
            id=member_id,
            election_tick=c.election_ticks,
            heartbeat_tick=c.heartbeat_ticks,
            snapshot_catchup_entries=c.snapshot_catchup_entries,
            seed=int.from_bytes(os.urandom(8), "big"),
        )

    def _check_identity(self, meta: MemberMeta) -> None:
        if meta.cluster_id != self.cfg.cluster_id:
            raise IdentityError(
                f"{self.cfg.data_dir} belongs to cluster {meta.cluster_id}, "
                f"not {self.cfg.cluster_id} (check --cluster-token)"
            )
        if self.cfg.join and self.cfg.member_id and self.cfg.member_id != meta.member_id:
            raise IdentityError(
                f"{self.cfg.data_dir} belongs to member {meta.member_id}, not {self.cfg.member_id}"
            )

    async def stop(self) -> None:
        """Stop the loop and the transport and flush storage; bounded in time."""
        self.stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self.transport is not None:
            await self.transport.stop()
        self._fail_all(E.Unavailable("member is shutting down", code="shutting_down"))
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
        if self._read_waiters:
            waiters, self._read_waiters = self._read_waiters, []
            # Unique cluster-wide: the leader keys pending reads by context, so two
            # members' counters must never collide.
            ctx = self.member_id.to_bytes(8, "big") + next(self._read_seq).to_bytes(8, "big")
            try:
                raw.read_index(ctx)
                self._read_batches[ctx] = _ReadBatch(waiters)
            except RaftError as exc:
                err = E.from_raft_error(exc)
                for f in waiters:
                    if not f.done():
                        f.set_exception(err)

    def _propose(self, props: list[tuple[bytes, bytes]]) -> None:
        raw = self.raw
        assert raw is not None
        try:
            before = raw.last_index
            raw.propose_batch([d for _, d in props])
        except RaftError as exc:
            err = E.from_raft_error(exc)
            for rid, _ in props:
                self._fail_write(rid, err)
            return
        if raw.role == Role.LEADER:
            # Remember which index each write landed at: if another entry is applied
            # there instead (a new leader overwrote ours), the write definitely failed.
            for i, (rid, _) in enumerate(props):
                self._index_owner[before + 1 + i] = rid

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
                self._fail_all(E.Unavailable("member failed", code="member_failed"))
                self.stopping = True
                self.on_removed()
                return

    async def _handle_ready(self, rd: Ready) -> None:
        raw = self.raw
        storage = self.storage
        assert raw is not None and storage is not None
        loop = asyncio.get_running_loop()
        if rd.soft_state is not None:
            self._on_soft_state(rd.soft_state.leader)
        # Replication traffic leaves before our own fsync: the core counts the
        # leader's copy toward a quorum only after advance(), and followers ack only
        # what they persisted, so the two fsyncs overlap (thesis §10.2.1). Anything
        # that vouches for our own durable state (acks, votes) waits for the disk.
        early, late = _split_messages(rd.messages)
        if early and self.transport is not None:
            self.transport.send(early)
        # Committed entries that are already on our disk need not wait for this
        # Ready's fsync either.
        committed = rd.committed_entries
        if committed and rd.snapshot is None:
            stable = raw.stable_index
            n = 0
            # A configuration change waits for the fsync (see Ready.must_sync).
            while (
                n < len(committed)
                and committed[n].index <= stable
                and committed[n].type != EntryType.CONF_CHANGE
            ):
                n += 1
            if n:
                self._apply(committed[:n])
                committed = committed[n:]
        # 1. persist
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
            self._apply(committed)
        for dropped in rd.dropped_proposals:
            rid = _request_id_of(dropped)
            if rid:
                self._fail_write(
                    rid, E.Unavailable("the leader refused the write", code="proposal_dropped")
                )
        # 4. reads
        applied = self.kv.applied_index
        for rs in rd.read_states:
            batch = self._read_batches.pop(rs.request_ctx, None)
            if batch is None:
                continue
            batch.index = rs.index
            if rs.index <= applied:
                _resolve_reads(batch)
            else:
                self._reads_after_apply.append(batch)
        self._release_reads()

    def _apply(self, entries: list[Entry]) -> None:
        kv = self.kv
        committed = 0
        for e in entries:
            idx = e.index
            if idx <= kv.applied_index:
                continue  # re-delivered after a restart: the snapshot already has it
            owner = self._index_owner.pop(idx, None) if self._index_owner else None
            if e.type == EntryType.CONF_CHANGE:
                kv.advance(idx)
                self._apply_conf_change(e)
                if owner is not None:
                    self._fail_write(owner, _overwritten())
                continue
            data = e.data
            if not data:
                kv.advance(idx)
                if owner is not None:
                    self._fail_write(owner, _overwritten())
                continue
            attrs = decode_attrs(data)
            if attrs is not None:
                kv.advance(idx)
                self.registry.apply_attrs(attrs)
                if attrs.id != self.member_id:
                    self._sync_peers()
                continue
            try:
                cmd = Command.decode(data)
            except CommandDecodeError:
                log.error("entry %d holds no command this member understands; skipped", idx)
                kv.advance(idx)
                continue
            result = kv.apply(idx, cmd)
            committed += 1
            rid = cmd.request_id
            if owner is not None and owner != rid:
                self._fail_write(owner, _overwritten())
            waiters = self._write_waiters.pop(rid, None) if rid else None
            if waiters:
                for f in waiters:
                    if not f.done():
                        f.set_result(result)
        if committed:
            self.metrics.proposals_committed.inc(committed)
        # Conf-change waiters whose index was passed by something else.
        if self._conf_waiters:
            for idx in [i for i in self._conf_waiters if i <= kv.applied_index]:
                w = self._conf_waiters.pop(idx)
                if not w.future.done():
                    w.future.set_exception(_overwritten())

    def _apply_conf_change(self, e: Entry) -> None:
        try:
            cc = decode_conf_change(e.data)
        except InvalidConfChange:
            return
        self.registry.apply_conf_change(cc)
        waiter = self._conf_waiters.pop(e.index, None)
        if waiter is not None and not waiter.future.done():
            if waiter.change.type == cc.type and waiter.change.node_id == cc.node_id:
                waiter.future.set_result(None)
            else:
                waiter.future.set_exception(_overwritten())
        if cc.type == ConfChangeType.REMOVE_NODE and cc.node_id == self.member_id:
            self._mark_removed()
        self._sync_peers()

    def _release_reads(self) -> None:
        applied = self.kv.applied_index
        q = self._reads_after_apply
        while q and q[0].index <= applied:
            _resolve_reads(q.popleft())
        if q and any(b.index <= applied for b in q):
            keep: deque[_ReadBatch] = deque()
            for b in q:
                if b.index <= applied:
                    _resolve_reads(b)
                else:
                    keep.append(b)
            self._reads_after_apply = keep

    def _on_soft_state(self, leader: int) -> None:
        if leader != self._leader:
            if leader != NONE:
                self._leader_seen = leader
                self.metrics.leader_changes.inc()
                self.stats.leader_changes += 1
            self._leader = leader
            log.info("member %d: leader is now %s", self.member_id, leader or "unknown")
            for pred, fut in list(self._leader_waiters):
                if pred(leader) and not fut.done():
                    fut.set_result(leader)
            self._leader_waiters = [(p, f) for p, f in self._leader_waiters if not f.done()]

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
        self._fail_all(E.Gone(f"member {self.member_id} was removed from the cluster"))
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
            self.member_id, self.cfg.name, (self.cfg.peer_url,), (self.cfg.client_url,)
        )
        if info.client_urls == want.client_urls and info.name == want.name:
            self._published = True
            return
        try:
            raw.propose(encode_attrs(want))
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
            view = self.kv.snapshot_view()
            reg = self.registry.copy()
            index = view.applied_index
            data = await loop.run_in_executor(
                self._snap_executor, lambda: _encode_state(view.serialize(), reg)
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
        the KVStore snapshot format at its applied index, and their SHA-256 (hex). The
        view is taken here, on the loop, so it is one point in time; serializing and
        hashing run in the snapshot thread, as for `_snapshot`."""
        self._check_serving()
        view = self.kv.snapshot_view()

        def _dump() -> tuple[bytes, str]:
            data = view.serialize()
            return data, hashlib.sha256(data).hexdigest()

        try:
            data, digest = await asyncio.get_running_loop().run_in_executor(
                self._snap_executor, _dump
            )
        except RuntimeError:  # the executor is gone: we are stopping
            raise E.Unavailable("member is shutting down", code="shutting_down") from None
        return view.applied_index, data, digest

    def _install_snapshot_data(self, snap: Snapshot) -> None:
        kv_bytes, reg = _decode_state(snap.data)
        self.kv.restore(kv_bytes)
        self.registry = reg
        # The snapshot supersedes anything waiting on indexes it covers.
        for idx in [i for i in self._index_owner if i <= snap.metadata.index]:
            self._fail_write(self._index_owner.pop(idx), _indeterminate())

    # --- client operations ----------------------------------------------------------

    def _check_serving(self) -> None:
        check_serving(
            joined=self.raw is not None,
            removed=self.removed,
            member_id=self.member_id,
            stopping=self.stopping,
        )

    async def write(self, cmd: Command) -> ApplyResult:
        """Propose a write and return once it is committed and applied here."""
        self._check_serving()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ApplyResult] = loop.create_future()
        rid = cmd.request_id
        self._write_waiters.setdefault(rid, []).append(fut)
        self._proposals.append((rid, cmd.encode()))
        self.stats.proposals_pending += 1
        self._wake.set()
        try:
            return await asyncio.wait_for(fut, self.cfg.request_timeout)
        except TimeoutError:
            self.metrics.proposals_failed.inc()
            raise _indeterminate() from None
        except E.ApiError:
            self.metrics.proposals_failed.inc()
            raise
        finally:
            self.stats.proposals_pending -= 1
            waiters = self._write_waiters.get(rid)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(fut)
                if not waiters:
                    del self._write_waiters[rid]

    def _fail_write(self, rid: bytes, err: E.ApiError) -> None:
        for f in self._write_waiters.pop(rid, ()):
            if not f.done():
                f.set_exception(err)

    def _fail_all(self, err: E.ApiError) -> None:
        for rid in list(self._write_waiters):
            self._fail_write(rid, err)
        futures: list[asyncio.Future[None]] = list(self._read_waiters)
        for b in self._read_batches.values():
            futures.extend(b.futures)
        for b in self._reads_after_apply:
            futures.extend(b.futures)
        for w in self._conf_waiters.values():
            futures.append(w.future)
        for f in futures:
            if not f.done():
                f.set_exception(err)
        self._read_waiters = []
        self._read_batches = {}
        self._reads_after_apply = deque()
        self._conf_waiters = {}

    async def linearizable_barrier(self) -> None:
        """Return once this member's state includes every write that completed before
        the call (ReadIndex, thesis §6.4): reads after it are linearizable."""
        self._check_serving()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_waiters.append(fut)
        self._wake.set()
        try:
            await asyncio.wait_for(fut, self.cfg.request_timeout)
        except TimeoutError:
            raise E.Unavailable(
                "could not confirm the read with a quorum in time", code="timeout"
            ) from None

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
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            raw.propose_conf_change(cc)
        except RaftError as exc:
            raise E.from_raft_error(exc) from exc
        self._conf_waiters[raw.last_index] = _ConfWaiter(fut, cc)
        self._wake.set()
        try:
            await asyncio.wait_for(fut, self.cfg.request_timeout)
        except TimeoutError:
            raise _indeterminate() from None

    async def transfer_leader(self, to: int, *, timeout: float | None = None) -> int:
        self._check_serving()
        raw = self.raw
        assert raw is not None
        if raw.role != Role.LEADER:
            raise E.from_raft_error(NotLeader("not the leader"))
        if to == self.member_id:
            return to
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._leader_waiters.append((lambda lead: lead == to, fut))
        try:
            raw.transfer_leader(to)
        except RaftError as exc:
            raise E.from_raft_error(exc) from exc
        self._wake.set()
        try:
            return await asyncio.wait_for(fut, timeout or self.cfg.request_timeout)
        except TimeoutError:
            raise E.Unavailable(
                f"leadership did not move to {to} in time", code="timeout"
            ) from None

    # --- observation ------------------------------------------------------------------

    def _gauges(self) -> RaftGauges:
        raw = self.raw
        if raw is None:
            return RaftGauges(False, False, 0, 0, 0, 0, 0, 0, 0, 0)
        cs = raw.conf_state
        return RaftGauges(
            is_leader=raw.role == Role.LEADER,
            has_leader=raw.leader != NONE,
            term=raw.term,
            commit_index=raw.commit,
            applied_index=self.kv.applied_index,
            last_log_index=raw.last_index,
            snapshot_index=self._last_snapshot_index,
            voters=len(cs.voters),
            learners=len(cs.learners),
            proposals_pending=self.stats.proposals_pending,
        )

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

    def status(self) -> dict[str, object]:
        raw = self.raw
        if raw is None:
            return {
                "id": 0,
                "name": self.cfg.name,
                "cluster_id": self.cfg.cluster_id,
                "role": "joining",
                "leader": 0,
                "term": 0,
                "commit_index": 0,
                "applied_index": 0,
                "last_index": 0,
                "snapshot_index": 0,
                "removed": False,
                "members": [],
                "progress": {},
                "keys": 0,
                "conf_change_pending": False,
                "pending_conf_index": 0,
                "peer_url": self.cfg.peer_url,
            }
        st = raw.status()
        pending_conf = raw.pending_conf_index
        progress = {
            str(mid): {
                "match": p.match,
                "next": p.next,
                "state": str(p.state),
                "learner": p.learner,
                "recent_active": p.recent_active,
            }
            for mid, p in st.progress.items()
        }
        return {
            "id": self.member_id,
            "name": self.cfg.name,
            "cluster_id": self.cfg.cluster_id,
            "role": str(st.role),
            "leader": st.leader,
            "term": st.term,
            "commit_index": st.commit,
            "applied_index": self.kv.applied_index,
            "last_index": st.last_index,
            "snapshot_index": self._last_snapshot_index,
            "removed": self.removed,
            "members": self.registry.view(st.conf_state),
            "progress": progress,
            "keys": len(self.kv),
            # Only a leader knows; an operator waits for this before the next change.
            "conf_change_pending": pending_conf > st.commit,
            "pending_conf_index": pending_conf,
        }


META_FILE_NAME = "member.json"


def _norm(url: str) -> str:
    try:
        return validate_url(url)
    except ValueError:
        return url


def _removed_in_log(member_id: int, entries: list[Entry], commit: int) -> bool:
    """Whether a committed entry after the snapshot removed this member."""
    for e in entries:
        if e.index > commit:
            break
        if e.type == EntryType.CONF_CHANGE:
            try:
                cc = decode_conf_change(e.data)
            except InvalidConfChange:
                continue
            if cc.type == ConfChangeType.REMOVE_NODE and cc.node_id == member_id:
                return True
    return False


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


def _resolve_reads(batch: _ReadBatch) -> None:
    for f in batch.futures:
        if not f.done():
            f.set_result(None)


def _overwritten() -> E.ApiError:
    return E.Unavailable(
        "leadership changed and the write was not committed; it is safe to retry",
        code="proposal_dropped",
    )


def _indeterminate() -> E.ApiError:
    return E.Unavailable(
        "the write timed out: it may or may not have been committed; "
        "retry with the same X-Request-Id to find out",
        code="indeterminate",
    )


def _request_id_of(data: bytes) -> bytes:
    try:
        return Command.decode(data).request_id
    except CommandDecodeError:
        return b""


def _snapshot_phase(member_id: int, cfg: ServerConfig) -> int:
    """A deterministic, well-spread offset in [0, snapshot_count / 2) per member id."""
    return (member_id * 2654435761 % (1 << 32)) * (cfg.snapshot_count // 2) >> 32


def _encode_state(kv_bytes: bytes, reg: Registry) -> bytes:
    out: bytes = msgpack.packb([SNAPSHOT_FORMAT, kv_bytes, reg.encode()], use_bin_type=True)
    return out


def _decode_state(data: bytes) -> tuple[bytes, Registry]:
    version, kv_bytes, reg_bytes = msgpack.unpackb(data, raw=False)
    if version != SNAPSHOT_FORMAT:
        raise ValueError(f"unsupported snapshot format {version}")
    return bytes(kv_bytes), Registry.decode(reg_bytes)
