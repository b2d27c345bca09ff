"""Child process for the SIGKILL test: appends forever, reporting what is durable.

Usage: python wal_child.py DIR SEED. Several threads append (ordered by a lock, durable
via group commit); right after `wait()` returns, the thread prints the index it made
durable and flushes stdout, so every printed index is a promise the WAL must keep.
"""

from __future__ import annotations

import random
import sys
import threading

from raftkv.raft.types import Entry, HardState
from raftkv.storage import WAL

THREADS = 4


def payload(index: int) -> bytes:
    return (f"{index}:" * (1 + index % 13)).encode()


def main() -> None:
    directory, seed = sys.argv[1], int(sys.argv[2])
    wal, replay = WAL.open(directory, segment_size=4096)
    state = {"next": replay.entries[-1].index + 1 if replay.entries else 1}
    order = threading.Lock()
    out = threading.Lock()

    def appender(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        while True:
            with order:
                first = state["next"]
                count = rng.randint(1, 5)
                state["next"] = first + count
                batch = [Entry(1, i, data=payload(i)) for i in range(first, first + count)]
                ticket = wal.submit(HardState(1, 1, first - 1), batch)
            wal.wait(ticket)
            with out:
                sys.stdout.write(f"{first + count - 1}\n")
                sys.stdout.flush()

    threads = [threading.Thread(target=appender, args=(n,), daemon=True) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
