"""Prometheus metrics of one member. Names are a contract (DESIGN.md).

Gauges that mirror Raft state are computed at scrape time from the node's status
instead of being updated on every loop iteration: the hot path pays nothing for them.
Each member gets its own registry so several members can live in one test process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
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
