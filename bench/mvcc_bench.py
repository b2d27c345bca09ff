"""The state machine alone (no Raft, no HTTP): how fast it applies, what its history
costs in memory, and how long the operations that scale with it take.

Builds a `StateMachine` with KEYS keys written REVISIONS times each (100-byte values),
then prints: applies/s, resident memory per key and per kept version, snapshot size,
the time its capture holds the member's loop, encode and restore times, a 1,000-key
range, a watch catch-up over the last 10,000 revisions, and a compaction that frees
half the history. Figures only.

    python bench/mvcc_bench.py [--keys 100000] [--revisions 10]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import time
from collections.abc import Callable
from typing import TypeVar

from raftkv.kv.machine import StateMachine
from raftkv.kv.mvcc.requests import PutRequest, RangeRequest
from raftkv.kv.proposal import CompactRequest, Proposal

T = TypeVar("T")


def rss_mb() -> float:
    """Current resident set size (Linux /proc), in MB."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--revisions", type=int, default=10)
    args = ap.parse_args()
    gc.collect()
    base = rss_mb()
    sm = StateMachine(clock=time.monotonic)
    value = b"v" * 100
    keys = [f"bench/key/{i:08d}".encode() for i in range(args.keys)]
    index = 0
    t0 = time.perf_counter()
    for _ in range(args.revisions):
        for k in keys:
            index += 1
            sm.apply(index, Proposal(PutRequest(k, value)))
    apply_s = time.perf_counter() - t0
    gc.collect()
    used = rss_mb() - base
    versions = args.keys * args.revisions
    print(
        f"{args.keys:,} keys x {args.revisions} revisions = {versions:,} versions, "
        f"100-byte values, one process"
    )
    print(f"apply: {versions / apply_s:,.0f} puts/s")
    print(
        f"memory: {used:,.0f} MB resident for the store: "
        f"{used * 1e6 / args.keys:,.0f} B per key, {used * 1e6 / versions:,.0f} B per version"
    )
    gc.disable()  # as the member does while it captures the view on its loop
    view, cap_s = timed(sm.snapshot_view)
    gc.enable()
    data, enc_s = timed(view)
    print(
        f"snapshot: {len(data) / 1e6:,.1f} MB: capture {cap_s * 1000:,.0f} ms (on the "
        f"member's loop), encode {enc_s * 1000:,.0f} ms (in its snapshot thread)",
        end="",
    )
    _, dec_s = timed(lambda: StateMachine.from_snapshot(data))
    print(f", restore {dec_s * 1000:,.0f} ms")
    start = keys[len(keys) // 2]
    gc.collect()
    rng, rng_s = timed(lambda: sm.mvcc.range_request(RangeRequest(start, b"\xff", limit=1000)))
    print(f"range of {len(rng.kvs)} keys: {rng_s * 1000:.1f} ms")
    # A full collection of the millions of objects alive (~0.5 s) lands wherever the
    # allocation counts say; collect first so that what is timed is the catch-up.
    gc.collect()
    evs, ev_s = timed(lambda: sm.mvcc.events(sm.revision - 10_000 + 1))
    print(f"watch catch-up over the last {len(evs):,} revisions: {ev_s * 1000:.1f} ms")
    half = sm.revision - versions // 2
    _, c_s = timed(lambda: sm.apply(index + 1, Proposal(CompactRequest(half))))
    gc.collect()
    print(
        f"compaction of half the history: {c_s * 1000:,.0f} ms; "
        f"resident after: {rss_mb() - base:,.0f} MB"
    )


if __name__ == "__main__":
    main()
