"""The simulator has teeth: inject a classic Raft bug into the core and it must notice.

Each test breaks one rule the paper relies on (by monkeypatching a private method of
the core, so a refactoring of the core may have to update the target name) and runs
seeds until the matching invariant fires. If the simulator stopped checking what it
claims to check, these would fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from raftkv.raft import core
from raftkv.raft import log as raft_log

from .harness import figure8_schedule
from .invariants import InvariantViolation
from .schedule import Simulation, SimulationFailure

MAX_SEEDS = 150


def first_violation(kinds: tuple[str, ...]) -> str:
    """Message of the first schedule (seeds 0..) that fails with one of `kinds`."""
    for seed in range(MAX_SEEDS):
        try:
            Simulation(seed).run()
        except SimulationFailure as exc:
            head = str(exc).splitlines()[0]
            if any(f": {k}:" in head for k in kinds):
                return head
    pytest.fail(f"no {kinds} violation in {MAX_SEEDS} seeds with the injected bug")


def patch(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, fn: Callable[..., Any]) -> None:
    # Fail, never skip: a skipped mutation test after a refactor renamed its target
    # would switch the safety net off without anyone noticing.
    if not hasattr(owner, name):
        pytest.fail(f"{owner.__name__}.{name} no longer exists; update the mutation target")
    monkeypatch.setattr(owner, name, fn)


def test_detects_missing_election_restriction(monkeypatch: pytest.MonkeyPatch) -> None:
    """§5.4.1: voting for candidates with stale logs loses committed entries."""
    patch(monkeypatch, raft_log.RaftLog, "is_up_to_date", lambda self, index, term: True)
    msg = first_violation(("leader-completeness", "state-machine-safety", "log-matching"))
    assert "seed=" in msg


def test_detects_reads_without_quorum_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thesis §6.4: a leader must confirm it still leads before serving a read."""

    def serve_at_once(self: Any, m: Any) -> None:
        self._respond_read_index(m, self.log.committed)

    patch(monkeypatch, core.Raft, "_handle_read_index_as_leader", serve_at_once)
    first_violation(("linearizable-read",))


def test_detects_forgotten_votes(monkeypatch: pytest.MonkeyPatch) -> None:
    """§5.1/Figure 2: a member votes at most once per term."""
    original = core.Raft._handle_vote_request

    def amnesiac(self: Any, m: Any) -> None:
        self.vote = 0
        original(self, m)

    patch(monkeypatch, core.Raft, "_handle_vote_request", amnesiac)
    first_violation(("durability", "election-safety"))


def test_detects_commit_of_old_term_entries_by_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    """§5.4.2: committing an old-term entry once it is on a majority (Figure 8)."""

    def commit_by_counting(self: Any) -> bool:
        matches = sorted((self.prs[m].match for m in self._voters() if m in self.prs), reverse=True)
        q = self._quorum()
        if len(matches) < q or matches[q - 1] <= self.log.committed:
            return False
        self._commit_to(matches[q - 1])
        return True

    patch(monkeypatch, core.Raft, "_maybe_commit", commit_by_counting)
    with pytest.raises(InvariantViolation, match=r"leader-completeness|state-machine-safety"):
        figure8_schedule()
