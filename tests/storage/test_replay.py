"""Replay re-enacts Raft's log writes: overwrite (§5.3) and snapshot install (§7)."""

from __future__ import annotations

import pytest

from raftkv.raft.types import Entry, HardState, SnapshotMetadata
from raftkv.storage.replay import LogGapError, LogReplayer


def ents(first: int, last: int, term: int) -> list[Entry]:
    return [Entry(term, i, data=f"{term}:{i}".encode()) for i in range(first, last + 1)]


def replay(*writes: Entry | HardState | SnapshotMetadata) -> LogReplayer:
    r = LogReplayer()
    for w in writes:
        if isinstance(w, Entry):
            r.entry(w)
        elif isinstance(w, HardState):
            r.hard_state(w)
        else:
            r.snapshot(w)
    return r


def terms(r: LogReplayer) -> list[tuple[int, int]]:
    return [(e.index, e.term) for e in r.replay.entries]


def test_later_leader_overwrites_suffix() -> None:
    r = replay(*ents(1, 10, 1), *ents(6, 8, 2))
    assert terms(r) == [(i, 1) for i in range(1, 6)] + [(i, 2) for i in range(6, 9)]


def test_overwrite_below_first_retained_entry_restarts_log() -> None:
    r = replay(*ents(5, 9, 1), *ents(3, 4, 2))
    assert terms(r) == [(3, 2), (4, 2)]


def test_gap_is_an_error() -> None:
    with pytest.raises(LogGapError, match="entry 5 does not follow"):
        replay(*ents(1, 3, 1), Entry(1, 5))


def test_hard_state_last_wins() -> None:
    r = replay(HardState(1, 1, 0), HardState(3, 2, 7), HardState(3, 2, 9))
    assert r.replay.hard_state == HardState(3, 2, 9)


def test_matching_snapshot_marker_keeps_log() -> None:
    r = replay(*ents(1, 10, 1), SnapshotMetadata(index=5, term=1))
    assert terms(r) == [(i, 1) for i in range(1, 11)]
    assert r.replay.snapshots == [SnapshotMetadata(5, 1)]


def test_conflicting_snapshot_discards_log_and_anchors_next_entry() -> None:
    r = replay(*ents(1, 10, 1), SnapshotMetadata(index=8, term=2))
    assert terms(r) == []
    assert r.term_at(8) == 2
    # A re-written copy of the same marker must not discard what follows it.
    r.entry(Entry(2, 9))
    r.snapshot(SnapshotMetadata(index=8, term=2))
    assert terms(r) == [(9, 2)]


def test_snapshot_past_the_end_discards_log() -> None:
    r = replay(*ents(1, 3, 1), SnapshotMetadata(index=50, term=4), *ents(51, 52, 4))
    assert terms(r) == [(51, 4), (52, 4)]


def test_snapshot_older_than_retained_log_is_ignored() -> None:
    r = replay(*ents(20, 25, 3), SnapshotMetadata(index=10, term=2))
    assert terms(r) == [(i, 3) for i in range(20, 26)]
    r = replay(SnapshotMetadata(index=50, term=4), SnapshotMetadata(index=40, term=3))
    assert r.term_at(50) == 4
    assert r.last_index() == 50


def test_entry_not_following_anchor_starts_fresh() -> None:
    r = replay(SnapshotMetadata(index=50, term=4), *ents(60, 61, 5))
    assert terms(r) == [(60, 5), (61, 5)]
    assert r.term_at(50) is None
