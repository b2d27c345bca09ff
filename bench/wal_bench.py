"""WAL append throughput and append-to-stable latency under group commit.

Compares N concurrent appenders (threads calling `WAL.save` with one 100-byte entry each)
against the raw fdatasync rate of the same disk, measured in the same run: with group
commit, records/s should exceed the raw sync rate by roughly the group size.

    python bench/wal_bench.py [--seconds 3] [--dir /path/on/the/disk] [--threads 1,16,64]

Prints figures; never asserts on timing.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass

from raftkv.raft.types import Entry
from raftkv.storage import WAL
from raftkv.storage.record import HEADER_SIZE, encode_entry


@dataclass
class Result:
    name: str
    ops: int
    seconds: float
    latencies: list[float]
    payload_bytes: int
    disk_bytes: int
    fsyncs: int

    def line(self) -> str:
        lat = sorted(self.latencies)
        p50 = lat[len(lat) // 2] * 1e3 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3 if lat else float("nan")
        rate = self.ops / self.seconds
        per_sync = self.ops / self.fsyncs if self.fsyncs else float("nan")
        mbps = self.payload_bytes / self.seconds / 1e6
        return (
            f"{self.name:<22} {rate:>10,.0f} rec/s {mbps:>7.2f} MB/s"
            f" (disk {self.disk_bytes / self.seconds / 1e6:>6.2f} MB/s)"
            f"  p50 {p50:>7.3f} ms  p99 {p99:>7.3f} ms"
            f"  fsyncs {self.fsyncs:>6} ({per_sync:.1f} rec/fsync)"
        )


def raw_fsync(directory: str, seconds: float) -> Result:
    path = os.path.join(directory, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    block = os.urandom(4096)
    latencies: list[float] = []
    try:
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            if t0 >= deadline:
                break
            os.write(fd, block)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        os.unlink(path)
    n = len(latencies)
    return Result("raw 4KiB write+fdatasync", n, elapsed, latencies, n * 4096, n * 4096, n)


def wal_appenders(directory: str, threads: int, seconds: float, entry_size: int) -> Result:
    wal_dir = os.path.join(directory, f"wal-{threads}")
    wal, _ = WAL.open(wal_dir)
    data = os.urandom(entry_size)
    indexes = itertools.count(1)
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    ready = threading.Barrier(threads + 1)
    deadline = 0.0

    def appender(lat: list[float]) -> None:
        ready.wait()
        save = wal.save
        clock = time.perf_counter
        while True:
            t0 = clock()
            if t0 >= deadline:
                return
            save(None, [Entry(1, next(indexes), data=data)])
            lat.append(clock() - t0)

    workers = [threading.Thread(target=appender, args=(lat,)) for lat in per_thread]
    for w in workers:
        w.start()
    base_syncs = wal.fsync_count
    start = time.perf_counter()
    deadline = start + seconds
    ready.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    fsyncs = wal.fsync_count - base_syncs
    wal.close()
    shutil.rmtree(wal_dir)
    latencies = [x for lat in per_thread for x in lat]
    n = len(latencies)
    record = HEADER_SIZE + len(encode_entry(Entry(1, 1, data=data)))
    name = f"WAL {threads:>2} appender{'s' if threads > 1 else ' '}"
    return Result(name, n, elapsed, latencies, n * entry_size, n * record, fsyncs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each case")
    ap.add_argument("--dir", default=None, help="directory on the disk to measure")
    ap.add_argument("--threads", default="1,16,64", help="comma-separated appender counts")
    ap.add_argument("--entry-size", type=int, default=100, help="entry payload bytes")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir)
    try:
        print(f"dir {workdir}  entry {args.entry_size} B  {args.seconds:g}s per case")
        raw = raw_fsync(workdir, args.seconds)
        print(raw.line())
        for n in (int(x) for x in args.threads.split(",")):
            res = wal_appenders(workdir, n, args.seconds, args.entry_size)
            print(res.line() + f"  x{res.ops / res.seconds / (raw.ops / raw.seconds):.1f} raw")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
