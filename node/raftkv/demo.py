"""An in-process, three-member cluster on a simulated network, for `raftkv demo`.

It shows the core at work (an election, replicated writes, a killed leader replaced,
the old leader catching up) before the networked member exists, and it doubles as the
smallest example of driving RawNode correctly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .raft import Config, Entry, HardState, Message, RawNode, Role


@dataclass
class _Disk:
    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)

    def save(self, hs: HardState | None, ents: list[Entry]) -> None:
        if ents:
            first = ents[0].index
            self.entries = [e for e in self.entries if e.index < first] + ents
        if hs is not None:
            self.hard_state = hs


class DemoCluster:
    def __init__(self, size: int = 3, seed: int = 7) -> None:
        self.ids = list(range(1, size + 1))
        self.disks = {i: _Disk() for i in self.ids}
        self.nodes: dict[int, RawNode] = {
            i: RawNode.bootstrap(Config(id=i, seed=seed * 100 + i), self.ids) for i in self.ids
        }
        self.kv: dict[int, dict[str, str]] = {i: {} for i in self.ids}
        self.inflight: list[Message] = []
        self.rng = random.Random(seed)
        self.ticks = 0

    def _drain(self) -> None:
        busy = True
        while busy:
            busy = False
            for i, node in self.nodes.items():
                while node.has_ready():
                    busy = True
                    rd = node.ready()
                    self.disks[i].save(rd.hard_state, rd.entries)  # persist first
                    self.inflight.extend(rd.messages)  # then send
                    for e in rd.committed_entries:  # then apply
                        if e.data and e.type == 0:
                            k, _, v = e.data.decode().partition("=")
                            self.kv[i][k] = v
                    node.advance(rd)
            msgs, self.inflight = self.inflight, []
            self.rng.shuffle(msgs)
            for m in msgs:
                if m.to in self.nodes:
                    busy = True
                    self.nodes[m.to].step(m)

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.ticks += 1
            for node in self.nodes.values():
                node.tick()
            self._drain()

    def leader(self) -> int | None:
        for i, n in self.nodes.items():
            if n.role == Role.LEADER:
                return i
        return None

    def put(self, key: str, value: str) -> None:
        lead = self.leader()
        assert lead is not None
        self.nodes[lead].propose(f"{key}={value}".encode())
        self._drain()

    def kill(self, i: int) -> None:
        del self.nodes[i]

    def restart(self, i: int) -> None:
        d = self.disks[i]
        self.kv[i] = {}
        self.nodes[i] = RawNode.restart(Config(id=i, seed=i), d.hard_state, None, d.entries)

    def describe(self) -> str:
        rows = []
        for i in self.ids:
            n = self.nodes.get(i)
            if n is None:
                rows.append(f"  member {i}: down")
            else:
                rows.append(
                    f"  member {i}: {n.role!s:<9} term={n.term} commit={n.commit} "
                    f"kv={dict(sorted(self.kv[i].items()))}"
                )
        return "\n".join(rows)


def run_demo() -> int:
    c = DemoCluster()
    c.run(40)
    print(f"after {c.ticks} ticks, member {c.leader()} leads:\n{c.describe()}")
    for k in range(3):
        c.put(f"k{k}", f"v{k}")
    print(f"three writes committed:\n{c.describe()}")
    old = c.leader()
    assert old is not None
    c.kill(old)
    c.run(60)
    print(f"killed leader {old}; member {c.leader()} took over:\n{c.describe()}")
    c.put("k3", "after-failover")
    c.restart(old)
    c.run(20)
    print(f"member {old} restarted from its log and caught up:\n{c.describe()}")
    return 0
