"""What a check concludes, per key and overall."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from raftkv.verify.history import Op


class Verdict(StrEnum):
    OK = "ok"
    """Linearizable: the search found an order."""
    VIOLATION = "violation"
    """Not linearizable: the search exhausted every order."""
    UNKNOWN = "unknown"
    """Inconclusive: a search bound ran out first. Never to be read as OK."""

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Verdict.OK: 0, Verdict.UNKNOWN: 1, Verdict.VIOLATION: 2}


def worst(verdicts: list[Verdict]) -> Verdict:
    return max(verdicts, key=lambda v: v.severity, default=Verdict.OK)


@dataclass(frozen=True, slots=True)
class KeyResult:
    key: str
    verdict: Verdict
    ops_checked: int
    """Ops that constrain the register (FAIL ops and pending reads are not counted)."""
    states_explored: int
    explanation: str | None = None
    """VIOLATION: a one-line reason; UNKNOWN: which bound ran out; OK: None."""
    window: list[Op] = field(default_factory=list)
    """VIOLATION: a small set of this key's ops, sorted by call, that cannot be linearized
    on its own (see verify.window for why it is a fair witness)."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    """The worst verdict across keys: VIOLATION > UNKNOWN > OK."""
    per_key: dict[str, KeyResult]

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def violations(self) -> list[KeyResult]:
        return [r for r in self.per_key.values() if r.verdict is Verdict.VIOLATION]

    def unknown(self) -> list[KeyResult]:
        return [r for r in self.per_key.values() if r.verdict is Verdict.UNKNOWN]
