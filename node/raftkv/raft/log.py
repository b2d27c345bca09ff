"""The replicated log as one member sees it: a compacted prefix (the snapshot) and the
entries after it, with markers for what is durable, committed and applied.

Unlike etcd/raft (which splits the log into a Storage interface and an unstable tail)
the core keeps every retained entry in memory; the WAL is write-only during normal
operation and read only at start. Memory is bounded by compaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import LogError
from .types import Entry, Snapshot

__all__ = ["LogError", "RaftLog"]


class RaftLog:
    __slots__ = (
        "applied",
        "applying",
        "committed",
        "entries",
        "offset",
        "offset_term",
        "pending_snapshot",
        "snapshot_in_progress",
        "stable",
        "stable_in_progress",
    )

    @classmethod
    def recovered(cls, offset: int, offset_term: int, entries: Sequence[Entry]) -> RaftLog:
        """A log read back from durable storage: the snapshot point and the contiguous
        entries after it, all of them already stable. The caller checks contiguity."""
        lg = cls(offset, offset_term)
        lg.entries = list(entries)
        lg.stable = lg.stable_in_progress = lg.last_index()
        return lg

    def __init__(self, offset: int = 0, offset_term: int = 0) -> None:
        self.offset = offset
        """Index of the last compacted entry: entries[0] has index offset + 1."""
        self.offset_term = offset_term
        self.entries: list[Entry] = []
        self.stable = offset
        """Entries up to here are durable on this member's disk."""
        self.stable_in_progress = offset
        """Entries up to here were handed out in a Ready and are being persisted."""
        self.committed = offset
        self.applied = offset
        self.applying = offset
        """Committed entries up to here were handed out for applying."""
        self.pending_snapshot: Snapshot | None = None
        """A snapshot received from the leader that the application has not persisted."""
        self.snapshot_in_progress = False

    # --- reading -----------------------------------------------------------------

    def first_index(self) -> int:
        return self.offset + 1

    def last_index(self) -> int:
        return self.offset + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`, or None when it is compacted or absent."""
        if index == self.offset:
            return self.offset_term
        if index < self.offset or index > self.last_index():
            return None
        return self.entries[index - self.offset - 1].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.offset - 1]

    def entries_between(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries with lo <= index < hi (hi is capped at the last index + 1).

        With `max_bytes`, stop before the entry that would take the total past it, but
        return at least one entry if there is any, so a single large entry still moves.
        `lo` below the first retained index is a caller bug (those entries are compacted:
        send the snapshot instead) and raises LogError.
        """
        if lo < self.first_index():
            raise LogError(f"slice({lo}) below first index {self.first_index()}")
        hi = min(hi, self.last_index() + 1)
        if lo >= hi:
            return []
        out = self.entries[lo - self.offset - 1 : hi - self.offset - 1]
        if max_bytes is None:
            return out
        size = 0
        for i, e in enumerate(out):
            size += len(e.data) + 24
            if size > max_bytes and i > 0:
                return out[:i]
        return out

    def slice(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries [lo, hi), at least one if any, at most about `max_size` bytes."""
        return self.entries_between(lo, hi, max_size)

    def uncommitted_entries(self) -> list[Entry]:
        """Entries past the commit index: what a new leader may still have to commit."""
        return self.entries_between(
            max(self.committed + 1, self.first_index()), self.last_index() + 1
        )

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """§5.4.1: a candidate's log is at least as up-to-date as ours."""
        lt = self.last_term()
        return term > lt or (term == lt and last_index >= self.last_index())

    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """Index of the first entry in `ents` that is new or contradicts our log, or 0."""
        for e in ents:
            t = self.term(e.index)
            if t is None and e.index <= self.offset:
                continue  # compacted, hence committed and identical (log matching)
            if t != e.term:
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= `index` whose term is <= `term`: where the leader should
        probe next, skipping a whole term of divergent entries per round trip (§5.3's
        optimization, as in etcd)."""
        if index > self.last_index():
            return index
        while index > self.offset:
            t = self.term(index)
            if t is None or t <= term:
                break
            index -= 1
        return index

    def unstable_entries(self) -> list[Entry]:
        start = self.stable_in_progress - self.offset
        if start >= len(self.entries):
            return []
        return self.entries[max(start, 0) :]

    def has_next_committed(self) -> bool:
        lo = max(self.applied, self.applying)
        return self.committed > lo and self.pending_snapshot is None

    def next_committed(self, limit: int) -> list[Entry]:
        lo = max(self.applied, self.applying) + 1
        if self.pending_snapshot is not None or lo > self.committed:
            return []
        hi = min(self.committed, lo + limit - 1)
        return self.entries[lo - self.offset - 1 : hi - self.offset]

    # --- writing -----------------------------------------------------------------

    def append(self, ents: Sequence[Entry]) -> int:
        """Append, truncating any conflicting suffix first (§5.3)."""
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise LogError(f"append after {after} would overwrite committed {self.committed}")
        if after < self.last_index():
            del self.entries[after - self.offset :]
            # What was durable beyond the truncation point is no longer our log.
            self.stable = min(self.stable, after)
            self.stable_in_progress = min(self.stable_in_progress, after)
        elif after > self.last_index():
            raise LogError(f"gap: appending {after + 1} after last {self.last_index()}")
        self.entries.extend(ents)
        return self.last_index()

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: Sequence[Entry]
    ) -> int | None:
        """The follower side of AppendEntries: None if the consistency check fails."""
        # The caller answered messages below our commit index already, so `index` is
        # never inside the compacted prefix here.
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise LogError(f"entry {ci} conflicts with committed entry {self.committed}")
            self.append([e for e in ents if e.index >= ci])
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        index = min(index, self.last_index())
        if index > self.committed:
            self.committed = index
            return True
        return False

    def stable_to(self, index: int, term: int) -> None:
        # Only if that entry is still ours: a leader may have overwritten it meanwhile.
        if self.term(index) == term and index > self.stable:
            self.stable = index

    def applied_to(self, index: int) -> None:
        if index > self.committed:
            raise LogError(f"applied {index} beyond committed {self.committed}")
        self.applied = max(self.applied, index)
        self.applying = max(self.applying, self.applied)

    def restore(self, snap: Snapshot) -> None:
        """Replace the whole log with a snapshot received from the leader (§7)."""
        meta = snap.metadata
        self.offset = meta.index
        self.offset_term = meta.term
        self.entries = []
        self.committed = meta.index
        self.stable = min(self.stable, meta.index)
        self.stable_in_progress = min(self.stable_in_progress, meta.index)
        self.pending_snapshot = snap
        self.snapshot_in_progress = False

    def snapshot_persisted(self, index: int) -> None:
        pending = self.pending_snapshot
        if pending is not None and pending.metadata.index == index:
            self.pending_snapshot = None
            self.snapshot_in_progress = False
            self.stable = max(self.stable, index)
            self.stable_in_progress = max(self.stable_in_progress, index)
            self.applied = max(self.applied, index)
            self.applying = max(self.applying, index)

    def compact(self, index: int) -> None:
        """Drop entries up to `index`; they are covered by a snapshot."""
        if index <= self.offset:
            return
        if index > self.applied:
            raise LogError(f"compact {index} beyond applied {self.applied}")
        term = self.term(index)
        assert term is not None
        del self.entries[: index - self.offset]
        self.offset = index
        self.offset_term = term
