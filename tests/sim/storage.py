"""One member's durable storage as the simulator models it: what survives a crash.

A crash loses everything else (the RawNode, Ready batches not yet persisted), so the
only way state reaches the next incarnation is through `DurableStore` — exactly the WAL
and snapshot files of a real member. The overwrite rule (an entry at index i replaces
every stored entry >= i) is the one docs/raft-core-api.md prescribes.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from raftkv.raft.types import Entry, HardState, Snapshot


class StorageContractError(AssertionError):
    """The core asked the application to persist something impossible (a log gap)."""


@dataclass(slots=True)
class DurableStore:
    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    """Contiguous; entries[0].index == snap_index + 1 when non-empty."""
    synced_commit: int = 0
    """The commit index as of the last fsync. A Ready whose hard state only moved the
    commit index is written without one (Ready.must_sync), so a crash may lose any
    suffix of the commit records after it: `lose_unsynced_commit` models that."""

    def lose_unsynced_commit(self, rng: random.Random) -> bool:
        hs = self.hard_state
        if hs.commit <= self.synced_commit:
            return False
        commit = rng.randint(self.synced_commit, hs.commit)
        self.hard_state = HardState(hs.term, hs.vote, commit)
        return commit != hs.commit

    @property
    def snap_index(self) -> int:
        return self.snapshot.metadata.index if self.snapshot is not None else 0

    @property
    def snap_term(self) -> int:
        return self.snapshot.metadata.term if self.snapshot is not None else 0

    @property
    def first_index(self) -> int:
        return self.snap_index + 1

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snap_index

    @property
    def empty(self) -> bool:
        return self.snapshot is None and not self.entries and self.hard_state == HardState()

    def term_at(self, index: int) -> int | None:
        """Term of the stored entry at `index`; None if compacted away or absent."""
        si = self.snap_index
        if index == si:
            return self.snap_term
        if index < si or index > self.last_index:
            return None
        return self.entries[index - si - 1].term

    def entry_at(self, index: int) -> Entry | None:
        si = self.snap_index
        if index <= si or index > self.last_index:
            return None
        return self.entries[index - si - 1]

    def append(self, ents: list[Entry]) -> list[Entry]:
        """Persist `ents` (contiguous) with overwrite semantics; returns the entries that
        were actually stored (those at or below the snapshot are already covered by it,
        as in etcd's MemoryStorage.Append)."""
        if not ents:
            return []
        first = ents[0].index
        for a, b in itertools.pairwise(ents):
            if b.index != a.index + 1:
                raise StorageContractError(f"Ready.entries not contiguous: {a.index}, {b.index}")
        if first > self.last_index + 1:
            raise StorageContractError(
                f"Ready.entries start at {first} but the stored log ends at {self.last_index}:"
                " persisting them would leave a gap"
            )
        si = self.snap_index
        if ents[-1].index <= si:
            return []
        if first <= si:
            ents = ents[si + 1 - first :]
            first = si + 1
        del self.entries[first - si - 1 :]
        self.entries.extend(ents)
        return ents

    def install_snapshot(self, snap: Snapshot) -> None:
        """A snapshot received from the leader replaces the whole log (etcd's
        MemoryStorage.ApplySnapshot): the core resets its own log the same way."""
        self.snapshot = snap
        self.entries = []

    def compact(self, snap: Snapshot) -> None:
        """A snapshot the member took itself: entries after it stay."""
        si = self.snap_index
        if snap.metadata.index <= si:
            return  # an older snapshot than the one on disk adds nothing
        keep_from = snap.metadata.index - si
        self.entries = self.entries[max(0, keep_from) :]
        self.snapshot = snap

    def restart_entries(self) -> list[Entry]:
        return list(self.entries)
