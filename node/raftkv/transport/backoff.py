"""Redial delays for a peer stream: capped exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delay before the next dial attempt.

    Exponential so a dead peer costs little; capped so a peer that comes back is
    reached within `maximum` (Raft needs it back before the next election timeout or
    two); jittered ("equal jitter": between half and all of the ceiling) so the members
    of a cluster that all lost the same peer do not redial it in lockstep, while the
    delay never collapses to zero and turns a flapping peer into a busy loop."""

    initial: float = 0.05
    maximum: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        ceiling: float = min(self.maximum, self.initial * float(1 << min(self.attempt, 32)))
        self.attempt += 1
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempt = 0
