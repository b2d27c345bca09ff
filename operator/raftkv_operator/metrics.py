"""The operator's Prometheus metrics (names are a contract, see DESIGN.md).

Defined once per process on the default registry, so ``prometheus_client``'s HTTP
server (started by ``raftkv operator --metrics-port``) exports them with the process
collectors; tests read them through the same objects.
"""

from __future__ import annotations

from prometheus_client import Counter

RECONCILES = Counter(
    "raftkv_operator_reconciles",
    "Reconcile steps, by result: done (in sync), wait, acted, conflict (status changed "
    "underneath; retried) or error.",
    ["result"],
)
MEMBERSHIP_CHANGES = Counter(
    "raftkv_operator_membership_changes",
    "Raft membership changes the operator carried out, by type: add_learner, promote, "
    "remove, transfer_leadership.",
    ["type"],
)


def count(counter: Counter, label: str) -> float:
    """The current value of one labelled child (for tests and logs)."""
    return float(counter.labels(label)._value.get())
