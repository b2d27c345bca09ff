"""The rewrite `--force-new-cluster` plans, as a pure function of recovered storage: it
keeps the whole log (committed or not), removes every other member after it, commits
up to the removals, and refuses a member that is not a voter of its own configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMetadata,
    decode_conf_change,
    encode_conf_change,
)
from raftkv.server import force_new_cluster as fnc
from raftkv.server.meta import IdentityError


def cc(kind: ConfChangeType, node: int, index: int, term: int = 2) -> Entry:
    return Entry(term, index, EntryType.CONF_CHANGE, encode_conf_change(ConfChange(kind, node)))


def put(index: int, term: int = 2) -> Entry:
    return Entry(term, index, EntryType.NORMAL, b"x")


SNAP = Snapshot(SnapshotMetadata(index=10, term=2, conf_state=ConfState(voters=(1, 2, 3))), b"")


def test_removes_every_other_member_after_the_whole_log_and_commits_it() -> None:
    # Entries 11..14 after the snapshot; this member only knew 12 committed, and a
    # learner 4 was being added (uncommitted) at 13.
    entries = [put(11), put(12), cc(ConfChangeType.ADD_LEARNER, 4, 13), put(14, term=3)]
    p = fnc.plan(2, SNAP, HardState(term=3, vote=1, commit=12), entries)
    assert p.removed == (1, 3, 4)
    assert p.previous_commit == 12
    assert p.last_index == 14
    assert [e.index for e in p.entries] == [15, 16, 17]
    assert {e.term for e in p.entries} == {3}  # the current term: terms never decrease
    assert [decode_conf_change(e.data) for e in p.entries] == [
        ConfChange(ConfChangeType.REMOVE_NODE, m) for m in (1, 3, 4)
    ]
    assert p.hard_state == HardState(term=3, vote=1, commit=17)
    assert fnc.configuration(SNAP, [*entries, *p.entries]) == ConfState(voters=(2,))


def test_without_a_snapshot_the_configuration_comes_from_the_log() -> None:
    entries = [cc(ConfChangeType.ADD_NODE, n, n, term=1) for n in (1, 2, 3)] + [put(4)]
    p = fnc.plan(3, None, HardState(term=2, vote=3, commit=4), entries)
    assert p.removed == (1, 2)
    assert p.hard_state.commit == 6


def test_a_lone_voter_with_everything_committed_is_a_noop() -> None:
    snap = Snapshot(SnapshotMetadata(index=5, term=1, conf_state=ConfState(voters=(7,))), b"")
    p = fnc.plan(7, snap, HardState(term=1, vote=7, commit=5), [])
    assert p.noop
    assert p.entries == ()


@pytest.mark.parametrize(
    ("member", "expect"),
    [(4, "is a learner"), (9, "is not a member")],
)
def test_only_a_voter_can_become_the_new_cluster(member: int, expect: str) -> None:
    entries = [cc(ConfChangeType.ADD_LEARNER, 4, 11)]
    with pytest.raises(IdentityError, match=expect):
        fnc.plan(member, SNAP, HardState(term=2, commit=11), entries)


def test_a_removed_member_cannot_force_either() -> None:
    entries = [cc(ConfChangeType.REMOVE_NODE, 3, 11)]
    with pytest.raises(IdentityError, match="not a member"):
        fnc.plan(3, SNAP, HardState(term=2, commit=10), entries)


def test_marker_round_trip_and_a_damaged_marker_still_counts(tmp_path: Path) -> None:
    assert fnc.load_marker(tmp_path) is None
    (tmp_path / fnc.MARKER_FILE).write_text("{not json")
    assert fnc.load_marker(tmp_path) is not None
    fnc.clear_marker(tmp_path)
    assert fnc.load_marker(tmp_path) is None


def test_the_step_is_durable_and_runs_once(tmp_path: Path) -> None:
    """On a real data dir: the removals and the commit survive a reopen, and a second
    run with the marker present changes nothing."""
    from raftkv.storage import open_storage

    boot = [cc(ConfChangeType.ADD_NODE, n, n, term=1) for n in (1, 2, 3)]
    st = open_storage(tmp_path)
    try:
        st.wal.save(HardState(term=2, vote=1, commit=4), [*boot, put(4), put(5)])
    finally:
        st.close()

    st = open_storage(tmp_path)
    try:
        p = fnc.apply(tmp_path, 1, st)
        assert p is not None
        assert p.removed == (2, 3)
        assert st.hard_state.commit == 7
    finally:
        st.close()

    st = open_storage(tmp_path)
    try:
        assert st.hard_state == HardState(term=2, vote=1, commit=7)
        assert [e.index for e in st.entries] == [1, 2, 3, 4, 5, 6, 7]
        assert fnc.configuration(None, st.entries) == ConfState(voters=(1,))
        assert fnc.apply(tmp_path, 1, st) is None  # the marker: not again
        assert st.hard_state.commit == 7
    finally:
        st.close()
    marker = fnc.load_marker(tmp_path)
    assert marker is not None
    assert (marker.removed, marker.previous_commit, marker.commit) == ([2, 3], 4, 7)
