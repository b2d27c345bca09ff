"""Checking a member's ``/metrics`` against the metric names of the contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

#: Family names (counters without ``_total``, as the Prometheus parser names them) that
#: DESIGN.md makes a contract: dashboards and alerts depend on them.
CONTRACT_FAMILIES = (
    "raftkv_is_leader",
    "raftkv_has_leader",
    "raftkv_term",
    "raftkv_commit_index",
    "raftkv_applied_index",
    "raftkv_last_log_index",
    "raftkv_snapshot_index",
    "raftkv_members",
    "raftkv_leader_changes",
    "raftkv_proposals_committed",
    "raftkv_proposals_failed",
    "raftkv_proposals_pending",
    "raftkv_wal_fsync_duration_seconds",
    "raftkv_snapshot_save_duration_seconds",
    "raftkv_peer_rtt_seconds",
    "raftkv_http_request_duration_seconds",
)


@dataclass(frozen=True)
class MemberMetrics:
    families: frozenset[str]
    #: Unlabelled samples and ``raftkv_members{role=...}`` as ``raftkv_members:<role>``.
    values: Mapping[str, float]

    def value(self, name: str) -> float | None:
        return self.values.get(name)


def parse_metrics(text: str) -> MemberMetrics:
    families: set[str] = set()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            if not sample.labels:
                values[sample.name] = sample.value
            elif sample.name == "raftkv_members" and "role" in sample.labels:
                values[f"raftkv_members:{sample.labels['role']}"] = sample.value
    return MemberMetrics(frozenset(families), values)


def missing_families(metrics: MemberMetrics) -> list[str]:
    return [name for name in CONTRACT_FAMILIES if name not in metrics.families]


def check_members(scraped: Mapping[str, MemberMetrics], voters: int) -> list[str]:
    """Problems with a set of scrapes (pod name → metrics) of a healthy cluster of
    ``voters`` members: exactly one leader, everybody knows it, one term, no learners,
    applied never ahead of commit."""
    problems: list[str] = []
    for pod, full in sorted(scraped.items()):
        m = _Shown(full)
        missing = missing_families(full)
        if missing:
            problems.append(f"{pod}: contract metrics missing: {', '.join(missing)}")
        if m.value("raftkv_has_leader") != 1:
            problems.append(f"{pod}: raftkv_has_leader={m.value('raftkv_has_leader')}")
        if m.value("raftkv_members:voter") != voters:
            problems.append(
                f"{pod}: raftkv_members{{role=voter}}={m.value('raftkv_members:voter')}, "
                f"expected {voters}"
            )
        if m.value("raftkv_members:learner") not in (0, None):
            problems.append(f"{pod}: {m.value('raftkv_members:learner')} learners")
        commit, applied = m.value("raftkv_commit_index"), m.value("raftkv_applied_index")
        if commit is None or applied is None or applied > commit or commit < 1:
            problems.append(f"{pod}: commit_index={commit} applied_index={applied}")
        if (m.value("raftkv_term") or 0) < 1:
            problems.append(f"{pod}: raftkv_term={m.value('raftkv_term')}")
    leaders = list(leader_of(scraped))
    if len(leaders) != 1:
        problems.append(f"expected exactly one raftkv_is_leader=1, got {leaders or 'none'}")
    terms = {pod: _Shown(m).value("raftkv_term") for pod, m in scraped.items()}
    if len(set(terms.values())) > 1:
        problems.append(f"members disagree on the term: {terms}")
    return problems


def leader_of(scraped: Mapping[str, MemberMetrics]) -> Sequence[str]:
    return sorted(pod for pod, m in scraped.items() if m.value("raftkv_is_leader") == 1)


class _Shown:
    """Sample values as people write them (3, not 3.0) for the problem messages."""

    def __init__(self, metrics: MemberMetrics) -> None:
        self.metrics = metrics

    def value(self, name: str) -> int | float | None:
        v = self.metrics.value(name)
        return int(v) if v is not None and v.is_integer() else v
