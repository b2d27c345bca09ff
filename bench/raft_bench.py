"""Entries committed per second by an in-process three-member Raft core with no I/O.

Measures the protocol's own CPU cost: the three RawNodes run in one thread, messages
are handed over in memory, "persisting" is a no-op. Two modes: one proposal per
Ready round trip (no batching), and batches of proposals per append (what the member
does under load). Prints figures; never passes or fails.

    python bench/raft_bench.py [--seconds 3] [--batch 64] [--value-size 100]
"""

from __future__ import annotations

import argparse
import time

from raftkv.raft import Config, Message, RawNode, Role


def make_cluster() -> dict[int, RawNode]:
    ids = [1, 2, 3]
    nodes = {i: RawNode.bootstrap(Config(id=i, seed=i), ids) for i in ids}
    nodes[1].campaign()
    pump(nodes)
    assert nodes[1].role == Role.LEADER
    return nodes


def pump(nodes: dict[int, RawNode]) -> int:
    """Run Ready rounds until quiet; returns entries applied on the leader."""
    applied = 0
    busy = True
    while busy:
        busy = False
        outbox: list[Message] = []
        for i, n in nodes.items():
            while n.has_ready():
                busy = True
                rd = n.ready()
                outbox.extend(rd.messages)
                if i == 1:
                    applied += len(rd.committed_entries)
                n.advance(rd)
        for m in outbox:
            nodes[m.to].step(m)
    return applied


def run(seconds: float, batch: int, value: bytes) -> tuple[float, int]:
    nodes = make_cluster()
    leader = nodes[1]
    committed = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            if batch == 1:
                leader.propose(value)
            else:
                leader.propose_batch([value] * batch)
            committed += pump(nodes)
    elapsed = time.perf_counter() - start
    return committed / elapsed, committed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--value-size", type=int, default=100)
    args = ap.parse_args()
    value = b"x" * args.value_size
    print(f"in-process 3-member Raft core, no I/O, {args.value_size}-byte entries")
    for batch in (1, args.batch):
        rate, n = run(args.seconds, batch, value)
        label = "no batching (1 proposal per round)" if batch == 1 else f"batches of {batch}"
        print(f"  {label:<40} {rate:>12,.0f} entries/s  ({n:,} committed)")


if __name__ == "__main__":
    main()
