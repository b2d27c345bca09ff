"""Group commit: concurrent savers share fdatasyncs, and nobody returns before durable."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from raftkv.raft.types import Entry, HardState
from raftkv.storage import WAL, WalClosedError

THREADS = 16
PER_THREAD = 25


def payload(index: int) -> bytes:
    return f"entry-{index}".encode() * 4


def test_sixteen_threads_share_fsyncs_and_lose_nothing(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, segment_size=8192)
    base = wal.fsync_count
    order = threading.Lock()
    next_index = [1]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker() -> None:
        try:
            start.wait()
            for _ in range(PER_THREAD):
                # The index is chosen and queued atomically (ordered writers, as in the
                # node loop); durability is awaited outside the lock, sharing fsyncs.
                with order:
                    i = next_index[0]
                    next_index[0] += 1
                    ticket = wal.submit(HardState(1, 0, i - 1), [Entry(1, i, data=payload(i))])
                wal.wait(ticket)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert not errors
    saves = THREADS * PER_THREAD
    syncs = wal.fsync_count - base
    assert 0 < syncs < saves, (syncs, saves)
    assert wal.group_count < saves
    assert len(wal.segments) > 1  # rotation happened under concurrency too
    wal.close()

    wal, replay = WAL.open(tmp_path)
    assert [e.index for e in replay.entries] == list(range(1, saves + 1))
    assert all(e.data == payload(e.index) for e in replay.entries)
    assert replay.hard_state == HardState(1, 0, saves - 1)
    wal.close()


def test_save_blocks_until_its_group_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one fdatasync is in flight, later savers queue; they all return only after a
    later fdatasync that covers them (never on the strength of an earlier one)."""
    wal, _ = WAL.open(tmp_path)
    real = os.fdatasync
    in_sync = threading.Event()
    release = threading.Event()
    synced_groups: list[int] = []

    def gated(fd: int) -> None:
        if not release.is_set():
            in_sync.set()
            assert release.wait(30)
        real(fd)
        synced_groups.append(wal.group_count)

    monkeypatch.setattr(os, "fdatasync", gated)
    done: list[int] = []

    def first_saver() -> None:
        wal.save(None, [Entry(1, 1)])
        done.append(1)

    first = threading.Thread(target=first_saver)
    first.start()
    assert in_sync.wait(30)
    tickets = [wal.submit(None, [Entry(1, i)]) for i in (2, 3, 4)]
    followers = [threading.Thread(target=wal.wait, args=(t,)) for t in tickets]
    for t in followers:
        t.start()
    assert done == []  # the first saver is still waiting for its fdatasync
    release.set()
    first.join(30)
    for t in followers:
        t.join(30)
    assert done == [1]
    assert wal.group_count == 2  # entries 2..4 went out as one group
    wal.close()
    monkeypatch.undo()
    wal, replay = WAL.open(tmp_path)
    assert [e.index for e in replay.entries] == [1, 2, 3, 4]
    wal.close()


def test_close_flushes_submitted_records_and_rejects_new_ones(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path)
    ticket = wal.submit(None, [Entry(1, 1, data=b"x")])
    wal.close()
    wal.wait(ticket)  # already durable: waiting after close is fine
    with pytest.raises(WalClosedError):
        wal.submit(None, [Entry(1, 2)])
    with pytest.raises(WalClosedError):
        wal.release_to(3)
    wal, replay = WAL.open(tmp_path)
    assert [e.index for e in replay.entries] == [1]
    wal.close()


def test_unknown_ticket_is_rejected(tmp_path: Path) -> None:
    with WAL.open(tmp_path)[0] as wal:
        ticket = wal.submit(None, [Entry(1, 1)])
        with pytest.raises(ValueError, match="never issued"):
            wal.wait(ticket + 1)
        wal.wait(ticket)
        assert wal.submit(None, []) == ticket  # nothing new to wait for
