"""The log's own guards (§5.3 Log Matching, §5.4 safety): operations that would rewrite
committed history or leave holes are refused loudly, never applied."""

from __future__ import annotations

import pytest

from raftkv.raft import ConfState, Entry, Snapshot, SnapshotMetadata
from raftkv.raft.log import LogError, RaftLog

from .harness import ents


def log_with(n: int, committed: int = 0, applied: int = 0) -> RaftLog:
    lg = RaftLog()
    lg.append(ents(1, 1, n))
    lg.commit_to(committed)
    if applied:
        lg.applied_to(applied)
    return lg


def test_5_3_append_never_overwrites_committed_entries() -> None:
    lg = log_with(5, committed=3)
    with pytest.raises(LogError):
        lg.append(ents(2, 3, 1))
    lg.append(ents(2, 4, 1))  # above commit: truncates the uncommitted suffix
    assert lg.last_index() == 4
    assert lg.term(4) == 2


def test_5_3_append_refuses_gaps() -> None:
    lg = log_with(3)
    with pytest.raises(LogError):
        lg.append(ents(1, 5, 1))
    assert lg.append([]) == 3


def test_5_3_follower_append_conflicting_with_committed_entry_is_refused() -> None:
    lg = log_with(5, committed=4)
    with pytest.raises(LogError):
        lg.maybe_append(2, 1, 5, ents(9, 3, 2))


def test_5_3_entries_below_the_compaction_point_are_assumed_to_match() -> None:
    lg = log_with(6, committed=6, applied=6)
    lg.compact(4)
    assert lg.find_conflict(ents(1, 3, 4)) == 0
    assert lg.find_conflict(ents(1, 3, 5)) == 7


def test_conflict_search_beyond_the_log_returns_the_index() -> None:
    lg = log_with(3)
    assert lg.find_conflict_by_term(10, 1) == 10
    assert lg.entry(2) == ents(1, 2, 1)[0]


def test_apply_never_runs_ahead_of_commit() -> None:
    lg = log_with(5, committed=2)
    with pytest.raises(LogError):
        lg.applied_to(3)


def test_7_compaction_never_runs_ahead_of_apply() -> None:
    lg = log_with(5, committed=5, applied=2)
    with pytest.raises(LogError):
        lg.compact(3)
    lg.compact(2)
    lg.compact(1)  # already compacted: nothing to do
    assert lg.first_index() == 3
    with pytest.raises(LogError):
        lg.slice(2, 5, 1 << 20)


def test_7_restore_replaces_the_log_and_commits_the_snapshot() -> None:
    lg = log_with(5, committed=2)
    snap = Snapshot(SnapshotMetadata(9, 3, ConfState((1,))))
    lg.restore(snap)
    assert (lg.first_index(), lg.last_index(), lg.last_term(), lg.committed) == (10, 9, 3, 9)
    assert not lg.has_next_committed()
    lg.snapshot_persisted(8)  # not the pending one
    assert lg.pending_snapshot is snap
    lg.snapshot_persisted(9)
    assert lg.pending_snapshot is None
    assert lg.applied == 9
    assert lg.term(8) is None
    assert lg.term(9) == 3
    assert lg.term(10) is None
    lg.append([Entry(3, 10)])
    assert lg.is_up_to_date(10, 3)
    assert not lg.is_up_to_date(9, 3)


def test_conf_state_members_lists_voters_and_learners() -> None:
    assert ConfState((3, 1), (2,)).members() == (1, 2, 3)
