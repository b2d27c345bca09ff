"""Transport figures: batched APP throughput and idle round-trip latency between two
transports in one process, over real uvicorn servers on 127.0.0.1.

    python -m tests.transport.bench_transport [--loop asyncio|uvloop] [--messages N]

(from the repository root: it is a module of the transport tests' package, next to the
harness it drives).

Prints figures; never passes or fails on timing. Both members share one process and
one event loop (and so one core): the sender's encode and the receiver's decode
compete, which makes the throughput a floor for two real processes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import replace

from raftkv.raft.types import Message, MessageType

from .harness import FAST, Cluster, app, eventually

PAYLOAD = b"v" * 100


async def throughput(total: int, per_send: int, window: int) -> tuple[float, float]:
    """APP messages with one 100-byte entry, `per_send` per send() call (one Ready's
    worth), at most `window` in flight (the core's inflight limit does the same)."""
    cluster = Cluster()
    try:
        opts = replace(FAST, max_queue=window * 2, ping_interval=60.0)
        a = await cluster.add(1, options=opts)
        b = await cluster.add(2, options=opts)
        cluster.connect_all()
        a.transport.send([app(1, 2, 0, PAYLOAD)])
        await eventually(lambda: len(b.received) == 1, "warm-up")
        b.received.clear()
        b.batches.clear()
        sent = 0
        started = time.perf_counter()
        while sent < total:
            # The window as the core keeps it: yield to the receiver until it frees.
            while sent - len(b.received) >= window:  # noqa: ASYNC110
                await asyncio.sleep(0)
            n = min(per_send, total - sent)
            a.transport.send([app(1, 2, sent + i + 1, PAYLOAD) for i in range(n)])
            sent += n
            await asyncio.sleep(0)
        await eventually(lambda: len(b.received) == total, "all delivered", timeout=120)
        elapsed = time.perf_counter() - started
        assert [m.index for m in b.received[:3]] == [1, 2, 3]
        return total / elapsed, total / max(1, len(b.batches))
    finally:
        await cluster.close()


async def round_trips(n: int) -> list[float]:
    """HEARTBEAT from 1 to 2, answered from 2's on_messages with HEARTBEAT_RESP; the
    time until 1's on_messages sees the answer. Nothing else in flight (idle)."""
    cluster = Cluster()
    try:
        a = await cluster.add(1, options=replace(FAST, ping_interval=60.0))
        b = await cluster.add(2, options=replace(FAST, ping_interval=60.0))
        cluster.connect_all()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()

        def b_answers(batch: list[Message]) -> None:
            b.transport.send([Message(MessageType.HEARTBEAT_RESP, 1, 2, term=1) for _ in batch])

        def a_hears(batch: list[Message]) -> None:
            if not waiter.done():
                waiter.set_result(None)

        b.transport.inbound._on_messages = b_answers
        a.transport.inbound._on_messages = a_hears
        samples: list[float] = []
        for i in range(n + 50):
            waiter = loop.create_future()
            t0 = time.perf_counter()
            a.transport.send([Message(MessageType.HEARTBEAT, 2, 1, term=1, commit=i)])
            await asyncio.wait_for(waiter, 5)
            if i >= 50:  # the first few warm up connections and caches
                samples.append(time.perf_counter() - t0)
        return samples
    finally:
        await cluster.close()


async def main(args: argparse.Namespace) -> None:
    print(f"loop: {args.loop}, python {sys.version.split()[0]}, cpus {os.cpu_count()}")
    for per_send, window in [(1, 1), (1, 4096), (64, 4096), (256, 16384)]:
        total = args.messages if window > 1 else min(args.messages, 5000)
        rate, avg_batch = await throughput(total, per_send, window)
        print(
            f"throughput: {rate:>9,.0f} msg/s  ({per_send:>3} per send(), window {window:>5},"
            f" {avg_batch:,.0f} msgs/frame on average, {total:,} messages)"
        )
    samples = await round_trips(args.round_trips)
    samples.sort()

    def p(q: float) -> float:
        return samples[int(q * (len(samples) - 1))] * 1e6

    print(
        f"idle round trip (heartbeat -> response, {len(samples)} samples): "
        f"p50 {p(0.5):.0f} us, p90 {p(0.9):.0f} us, p99 {p(0.99):.0f} us, "
        f"mean {statistics.fmean(samples) * 1e6:.0f} us"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--round-trips", type=int, default=1000)
    ns = parser.parse_args()
    if ns.loop == "uvloop":
        import uvloop

        uvloop.run(main(ns))
    else:
        asyncio.run(main(ns))
