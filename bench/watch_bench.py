"""Watch fan-out: one writer at a fixed rate, many watchers spread over the three
members of a local raftkv cluster, all watching the writer's prefix.

Prints the write rate reached, events delivered per second (all watchers together),
the delivery delay from the write being sent to the event being read by a watcher
(p50/p99/max, over a sample of the watchers), watchers that ended early, and each
member's peak RSS. Watchers run in their own processes (aiohttp streams), the writer
in another. Figures only.

    PYTHONPATH=tests python bench/watch_bench.py [--watchers 1000] [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kv_bench import start_raftkv

PREFIX = "fan/"


def percentile(vals: list[float], q: float) -> float:
    if not vals:
        return float("nan")
    return vals[min(len(vals) - 1, max(0, round(q * (len(vals) - 1))))]


async def _watch(
    url: str, sample: bool, stop_at: float, counts: list[int], delays: list[float]
) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as s,
        s.get(f"{url}/v1/watch", params={"key": PREFIX, "prefix": "true"}) as r,
    ):
        if not sample:
            # Count without parsing or splitting lines: the client must not be the
            # bottleneck of a million events a second.
            async for chunk in r.content.iter_any():
                if time.time() >= stop_at:
                    return
                counts[0] += chunk.count(b'"type":')
                if b'"canceled"' in chunk:
                    counts[1] += 1
                    return
            return
        async for line in r.content:
            now = time.time()
            if now >= stop_at:
                return
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg.get("canceled"):
                counts[1] += 1
                return
            evs = msg.get("events")
            if not evs:
                continue
            counts[0] += len(evs)
            if sample:
                for ev in evs:
                    sent = float(base64.b64decode(ev["kv"]["value"]))
                    delays.append(now - sent)


def watcher_proc(
    endpoints: list[str], n: int, offset: int, stop_at: float, out: mp.Queue[object]
) -> None:
    async def main() -> tuple[int, int, list[float]]:
        counts = [0, 0]
        delays: list[float] = []
        tasks = [
            asyncio.create_task(
                _watch(
                    endpoints[(offset + i) % len(endpoints)], i % 20 == 0, stop_at, counts, delays
                )
            )
            for i in range(n)
        ]
        await asyncio.wait(tasks, timeout=max(0.0, stop_at - time.time()) + 5)
        for t in tasks:
            t.cancel()
        return counts[0], counts[1], delays

    events, cancelled, delays = asyncio.run(main())
    out.put((events, cancelled, delays))


def writer_proc(
    endpoint: str, rate: int, start_at: float, stop_at: float, out: mp.Queue[object]
) -> None:
    async def main() -> int:
        done = 0
        async with aiohttp.ClientSession() as s:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            tick = 1 / rate
            nxt = time.time()
            pending: set[asyncio.Task[None]] = set()

            async def put(i: int) -> None:
                nonlocal done
                body = f"{time.time():.6f}".encode()
                async with s.put(f"{endpoint}/v1/kv/{PREFIX}{i % 100}", data=body) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1

            i = 0
            while time.time() < stop_at:
                nxt += tick
                t = asyncio.create_task(put(i))
                pending.add(t)
                t.add_done_callback(pending.discard)
                i += 1
                await asyncio.sleep(max(0.0, nxt - time.time()))
            if pending:
                await asyncio.wait(pending, timeout=10)
        return done

    out.put(asyncio.run(main()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watchers", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=1000, help="writes per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=2, help="watcher processes")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="raftkv-watch-bench-"))
    cluster = start_raftkv(root)
    try:
        ctx = mp.get_context("spawn")
        q: mp.Queue[object] = ctx.Queue()
        settle = 3.0 + args.watchers / 500
        start_at = time.time() + settle
        stop_at = start_at + args.seconds
        per = [
            args.watchers // args.procs + (i < args.watchers % args.procs)
            for i in range(args.procs)
        ]
        procs = [
            ctx.Process(target=watcher_proc, args=(cluster.endpoints, n, i, stop_at, q))
            for i, n in enumerate(per)
        ]
        procs.append(
            ctx.Process(
                target=writer_proc, args=(cluster.endpoints[0], args.rate, start_at, stop_at, q)
            )
        )
        for p in procs:
            p.start()
        results = [q.get(timeout=settle + args.seconds + 120) for _ in procs]
        for p in procs:
            p.join(30)
        rss = cluster.peak_rss_mb()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    writes = next(r for r in results if isinstance(r, int))
    events = sum(r[0] for r in results if isinstance(r, tuple))
    cancelled = sum(r[1] for r in results if isinstance(r, tuple))
    delays = sorted(d for r in results if isinstance(r, tuple) for d in r[2])
    print(
        f"3-member raftkv on 127.0.0.1, {os.cpu_count()} cores: {args.watchers} watchers "
        f"({args.procs} processes, spread over the members), one writer at {args.rate}/s, "
        f"{args.seconds:.0f} s"
    )
    print(f"writes acknowledged: {writes / args.seconds:,.0f}/s")
    print(f"events delivered: {events / args.seconds:,.0f}/s (all watchers)")
    print(
        f"delivery delay (write sent -> event read), {len(delays):,} samples: "
        f"p50 {percentile(delays, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(delays, 0.99) * 1000:.1f} ms, "
        f"max {delays[-1] * 1000 if delays else float('nan'):.1f} ms"
    )
    print(f"watchers cancelled by the server: {cancelled}")
    print("raftkv peak RSS per member (MB): " + ", ".join(f"{x:.0f}" for x in rss))


if __name__ == "__main__":
    main()
