"""The simulated network: decides each message's fate from a seeded RNG.

Raft assumes an asynchronous network that may lose, duplicate, delay and reorder
messages (§5.1: "RPCs ... may be lost, duplicated or reordered"); partitions are the
case where a set of links drops everything for a while. The network never looks at
message contents, so it cannot accidentally be kinder to one protocol step than
another. Delays are drawn per message, which is what reorders them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from raftkv.raft.types import Message


@dataclass(slots=True)
class NetworkParams:
    drop: float = 0.0
    """Probability that a message is lost."""
    duplicate: float = 0.0
    """Probability that a message is delivered twice (each copy with its own delay)."""
    min_delay: int = 1
    max_delay: int = 10
    """Typical one-way latency range, in time units (a tick is `Cluster.TICK` units)."""
    slow: float = 0.0
    """Probability that a message takes the slow path (long delay, heavy reordering)."""
    slow_delay: int = 60


@dataclass(slots=True)
class InFlight:
    msg: Message
    sender_incarnation: int
    copy: bool = False
    """A duplicate: the transport reports snapshot status for the original only."""


@dataclass(slots=True)
class Network:
    rng: random.Random
    params: NetworkParams = field(default_factory=NetworkParams)
    group: dict[int, int] = field(default_factory=dict)
    """Partition group of each member; members in different groups cannot talk.
    A member not listed is in group 0."""
    blocked: set[tuple[int, int]] = field(default_factory=set)
    """Directed links (sender, receiver) that drop everything: asymmetric faults, used
    by scenarios to let an acknowledgement through while the next append is lost."""
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0

    def connected(self, a: int, b: int) -> bool:
        g = self.group
        return g.get(a, 0) == g.get(b, 0) and (a, b) not in self.blocked

    def partition(self, groups: list[list[int]]) -> None:
        self.group = {m: gi for gi, members in enumerate(groups) for m in members}

    def heal(self) -> None:
        self.group = {}
        self.blocked = set()

    @property
    def partitioned(self) -> bool:
        return len(set(self.group.values())) > 1

    def fate(self, msg: Message) -> list[int]:
        """Delays of the copies of `msg` that will arrive (empty when it is lost)."""
        p = self.params
        rng = self.rng
        self.sent += 1
        if p.drop and rng.random() < p.drop:
            self.dropped += 1
            return []
        delays = [self._delay()]
        if p.duplicate and rng.random() < p.duplicate:
            self.duplicated += 1
            delays.append(self._delay())
        return delays

    def _delay(self) -> int:
        p = self.params
        if p.slow and self.rng.random() < p.slow:
            return self.rng.randint(p.max_delay, p.slow_delay)
        return self.rng.randint(p.min_delay, p.max_delay)
