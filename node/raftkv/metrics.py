"""Prometheus metrics of one member. Names are a contract (DESIGN.md).

Gauges that mirror Raft state are computed at scrape time from the node's status
instead of being updated on every loop iteration: the hot path pays nothing for them.
Each member gets its own registry so several members can live in one test process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.024,
    2.048,
    4.096,
)


@dataclass(frozen=True, slots=True)
class RaftGauges:
    is_leader: bool
    has_leader: bool
    term: int
    commit_index: int
    applied_index: int
    last_log_index: int
    snapshot_index: int
    voters: int
    learners: int
    proposals_pending: int


class _RaftCollector(Collector):
    def __init__(self, source: Callable[[], RaftGauges]) -> None:
        self.source = source

    def collect(self) -> Iterable[GaugeMetricFamily]:
        g = self.source()
        simple = {
            "raftkv_is_leader": ("1 if this member is the leader", float(g.is_leader)),
            "raftkv_has_leader": ("1 if this member knows a leader", float(g.has_leader)),
            "raftkv_term": ("Current Raft term", g.term),
            "raftkv_commit_index": ("Raft commit index", g.commit_index),
            "raftkv_applied_index": ("Index applied to the state machine", g.applied_index),
            "raftkv_last_log_index": ("Last index in the Raft log", g.last_log_index),
            "raftkv_snapshot_index": ("Index of the latest snapshot", g.snapshot_index),
            "raftkv_proposals_pending": ("Writes proposed, not yet applied", g.proposals_pending),
        }
        for name, (doc, value) in simple.items():
            yield GaugeMetricFamily(name, doc, value=value)
        members = GaugeMetricFamily("raftkv_members", "Members by role", labels=["role"])
        members.add_metric(["voter"], g.voters)
        members.add_metric(["learner"], g.learners)
        yield members


@dataclass(frozen=True, slots=True)
class StoreGauges:
    """The state machine's numbers (MVCC store, leases, watchers) at scrape time."""

    keys: int
    revision: int
    compact_revision: int
    history_size: int
    leases: int
    watchers: int
    watch_streams: int
    watch_events_sent: int
    slow_watchers_cancelled: int
    compacted_watchers_cancelled: int
    space_bytes: int = 0
    quota_bytes: int = 0
    alarms: tuple[tuple[str, int], ...] = ()
    """Active alarms as (type, member id): etcd's NOSPACE (`kv.alarm`)."""


class _StoreCollector(Collector):
    def __init__(self, source: Callable[[], StoreGauges]) -> None:
        self.source = source

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        g = self.source()
        gauges = {
            "raftkv_keys": ("Keys that exist now", g.keys),
            "raftkv_store_revision": ("Current MVCC store revision", g.revision),
            "raftkv_compact_revision": (
                "Revision of the last compaction (0 before the first)",
                max(g.compact_revision, 0),
            ),
            "raftkv_history_size": (
                "Key versions kept as history (tombstones included) since compaction",
                g.history_size,
            ),
            "raftkv_leases": ("Leases that exist now", g.leases),
            "raftkv_watchers": ("Watches open on this member", g.watchers),
            "raftkv_watch_streams": ("Watch streams open on this member", g.watch_streams),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "raftkv_space_estimate_bytes",
            "Running estimate of the state machine's snapshot size (what the quota checks)",
            value=g.space_bytes,
        )
        yield GaugeMetricFamily(
            "raftkv_quota_backend_bytes",
            "Space quota of this member (--quota-backend-bytes; 0: none)",
            value=g.quota_bytes,
        )
        active = GaugeMetricFamily(
            "raftkv_alarm_active",
            "1 for each alarm active in the cluster (etcd's NOSPACE), by type and member",
            labels=["alarm", "member_id"],
        )
        for alarm, member in g.alarms:
            active.add_metric([alarm, str(member)], 1)
        yield active
        counters = {
            "raftkv_watch_events_sent": ("Watch events sent to clients", g.watch_events_sent),
            "raftkv_slow_watchers_cancelled": (
                "Watches cancelled because they fell too far behind",
                g.slow_watchers_cancelled,
            ),
            "raftkv_compacted_watchers_cancelled": (
                "Watches cancelled because the revisions they needed were compacted",
                g.compacted_watchers_cancelled,
            ),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(name, doc, value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.leader_changes = Counter(
            "raftkv_leader_changes_total", "Leader changes seen by this member", registry=r
        )
        self.proposals_committed = Counter(
            "raftkv_proposals_committed_total", "Entries committed and applied", registry=r
        )
        self.proposals_failed = Counter(
            "raftkv_proposals_failed_total", "Writes that failed or timed out", registry=r
        )
        self.wal_fsync = Histogram(
            "raftkv_wal_fsync_duration_seconds",
            "Time to make a batch of WAL records durable",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.snapshot_save = Histogram(
            "raftkv_snapshot_save_duration_seconds",
            "Time to serialize and persist a snapshot",
            buckets=(*_LATENCY_BUCKETS, 8.0, 16.0, 32.0),
            registry=r,
        )
        self.peer_rtt = Histogram(
            "raftkv_peer_rtt_seconds",
            "Round-trip time to each peer (WebSocket ping)",
            ["peer"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.http_duration = Histogram(
            "raftkv_http_request_duration_seconds",
            "Client API request latency",
            ["route", "method", "code"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.snapshots_received = Counter(
            "raftkv_snapshots_received_total", "Snapshots installed from the leader", registry=r
        )
        self.up = Gauge("raftkv_up", "1 while the member process serves", registry=r)
        self.up.set(1)

    def watch_raft(self, source: Callable[[], RaftGauges]) -> None:
        self.registry.register(_RaftCollector(source))

    def watch_store(self, source: Callable[[], StoreGauges]) -> None:
        self.registry.register(_StoreCollector(source))
