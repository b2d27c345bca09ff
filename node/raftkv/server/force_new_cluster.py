"""`raftkv serve --force-new-cluster`: quorum-loss recovery, as etcd's flag of that name.

When a majority of voters is gone for good, no entry can ever commit again. The way out
is to give up on the lost members: one survivor rewrites its own persisted
configuration to itself alone and starts as a one-voter cluster with all of its data;
new members are then added back through the normal membership API.

The step is local (this data dir only), logged, and done through the WAL like any other
configuration change, so nothing special is needed afterwards:

1. The configuration is computed from the snapshot's ConfState plus every
   configuration change in the WAL after it, **including entries this member has not
   seen committed**: a follower learns the commit index one round after the leader, so
   the last writes the leader acknowledged may sit beyond our own commit index. Keeping
   them keeps every acknowledged write this member holds.
2. One REMOVE_NODE entry per other member (voters and learners) is appended after the
   last entry, at the current term, and the hard state's commit is moved to the new
   last index (fsynced together, one WAL write).
3. The member then restarts normally: the core replays the committed configuration
   changes (it is a single voter and elects itself), and the member re-applies the
   entries, so the membership registry drops the others too and records their ids as
   removed (they are never reused, and the old members are refused if they come back).

Which writes may be lost: exactly those not in this member's log (committed by the
lost majority but never replicated here). Writes in its log beyond what the cluster
committed become committed; they were never acknowledged as successful (their clients
saw a timeout or `indeterminate`), which Raft allows for an unacknowledged write.

One time only: after the step, `force-new-cluster.json` in the data dir records what
was done (written after the WAL, so a crash in between only means the next start with
the flag finds the configuration already single and does nothing). While that marker
exists, the flag is ignored with a warning, so a member restarted with the flag still
set does not remove members that were added back since. A start *without* the flag
deletes the marker: setting the flag again after that asks for a new recovery.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    decode_conf_change,
    encode_conf_change,
)
from ..raft.confchange import apply_conf_change
from ..raft.errors import InvalidConfChange
from ..storage.fs import fsync_dir
from ..storage.recovery import RecoveredState
from .meta import IdentityError

log = logging.getLogger("raftkv.node")

MARKER_FILE = "force-new-cluster.json"


@dataclass(frozen=True, slots=True)
class ForcePlan:
    """What the step writes, decided from the recovered storage alone (pure)."""

    member_id: int
    removed: tuple[int, ...]
    """Every other member of the configuration, voters and learners."""
    previous_commit: int
    """The commit index this member knew of."""
    last_index: int
    """Its last log index before the step: entries in (previous_commit, last_index]
    become committed."""
    entries: tuple[Entry, ...]
    """The REMOVE_NODE entries appended after `last_index`."""
    hard_state: HardState

    @property
    def noop(self) -> bool:
        return not self.entries and self.previous_commit == self.last_index


@dataclass(frozen=True, slots=True)
class Marker:
    """`force-new-cluster.json`: proof that the step ran on this data dir."""

    member_id: int
    removed: list[int]
    previous_commit: int
    last_index: int
    commit: int
    term: int
    at: str


def configuration(snapshot: Snapshot | None, entries: Sequence[Entry]) -> ConfState:
    """The configuration at the end of the log: the snapshot's, then every change in
    the log after it, committed or not (undecodable ones skipped, as the core does)."""
    cs = snapshot.metadata.conf_state if snapshot is not None else ConfState()
    for e in entries:
        if e.type != EntryType.CONF_CHANGE:
            continue
        try:
            cs = apply_conf_change(cs, decode_conf_change(e.data))
        except InvalidConfChange:
            continue
    return cs


def plan(
    member_id: int, snapshot: Snapshot | None, hard_state: HardState, entries: Sequence[Entry]
) -> ForcePlan:
    """The entries and hard state that make `member_id` the only voter, keeping its whole
    log. Raises IdentityError when this member is not a voter of its own configuration:
    a learner (or a removed member) may lack committed writes, so it must not become the
    cluster."""
    cs = configuration(snapshot, entries)
    if member_id not in cs.voters:
        role = "a learner" if member_id in cs.learners else "not a member"
        raise IdentityError(
            f"--force-new-cluster: member {member_id} is {role} in its own configuration "
            f"(voters {list(cs.voters)}, learners {list(cs.learners)}); only a voter "
            "can become the new cluster"
        )
    snap_index = snapshot.metadata.index if snapshot is not None else 0
    last = entries[-1].index if entries else snap_index
    # The hard state's term is at least the last entry's (storage normalises it), so
    # appending at that term keeps the log's terms non-decreasing.
    term = hard_state.term
    others = tuple(m for m in cs.members() if m != member_id)
    new = tuple(
        Entry(
            term,
            last + i + 1,
            EntryType.CONF_CHANGE,
            encode_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, m)),
        )
        for i, m in enumerate(others)
    )
    return ForcePlan(
        member_id=member_id,
        removed=others,
        previous_commit=max(hard_state.commit, snap_index),
        last_index=last,
        entries=new,
        hard_state=HardState(term=term, vote=hard_state.vote, commit=last + len(new)),
    )


def load_marker(data_dir: Path) -> Marker | None:
    path = data_dir / MARKER_FILE
    try:
        raw = json.loads(path.read_text())
        return Marker(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        # A damaged marker still says the step ran: err on the side of not repeating it.
        log.warning("%s is unreadable (%s); treating the recovery as done", path, exc)
        return Marker(0, [], 0, 0, 0, 0, "unknown")


def _save_marker(data_dir: Path, marker: Marker) -> None:
    tmp = data_dir / (MARKER_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(asdict(marker), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, data_dir / MARKER_FILE)
    fsync_dir(data_dir)


def clear_marker(data_dir: Path) -> None:
    """A start without the flag: the recovery it recorded is over."""
    path = data_dir / MARKER_FILE
    if path.exists():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fsync_dir(data_dir)
        log.info("started without --force-new-cluster: removed %s", path)


def apply(data_dir: Path, member_id: int, storage: RecoveredState) -> ForcePlan | None:
    """Run the step on opened storage (before the Raft node is built from it): append
    the removals to the WAL, then update `storage` to what a restart would now read.
    Returns None when the marker says it already ran."""
    done = load_marker(data_dir)
    if done is not None:
        log.warning(
            "--force-new-cluster already ran on %s (at %s, index %d, removed %s): not "
            "repeating it; start once without the flag before asking for a new recovery",
            data_dir,
            done.at,
            done.commit,
            done.removed,
        )
        return None
    p = plan(member_id, storage.snapshot, storage.hard_state, storage.entries)
    if p.noop:
        log.warning(
            "--force-new-cluster: member %d is already the only voter with nothing "
            "uncommitted; nothing to rewrite",
            member_id,
        )
    else:
        log.warning(
            "--force-new-cluster: member %d becomes a one-voter cluster: removing members "
            "%s at indexes %d..%d (term %d); committing its whole log (commit %d -> %d, "
            "%d of its entries not yet known committed); writes not in its log are lost",
            member_id,
            list(p.removed),
            p.last_index + 1,
            p.hard_state.commit,
            p.hard_state.term,
            p.previous_commit,
            p.hard_state.commit,
            p.last_index - p.previous_commit,
        )
        storage.wal.save(p.hard_state, list(p.entries))
        storage.entries = [*storage.entries, *p.entries]
        storage.hard_state = p.hard_state
    _save_marker(
        data_dir,
        Marker(
            member_id=member_id,
            removed=list(p.removed),
            previous_commit=p.previous_commit,
            last_index=p.last_index,
            commit=p.hard_state.commit,
            term=p.hard_state.term,
            at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        ),
    )
    return p
