"""Rebuilding the log from WAL records in write order (pure; no files).

The WAL is append-only, but the Raft log is not: a new leader may overwrite a follower's
uncommitted suffix (§5.3), and an installed snapshot may discard the whole log (§7). The
WAL therefore records *what was written when*, and replay re-enacts those writes:

* an entry at index i replaces every earlier-written entry with index >= i;
* a snapshot marker (index S, term T) keeps the log if it holds (S, T) -- the usual case
  of local compaction -- and otherwise discards it, exactly as a follower installing a
  snapshot does; the next entry then continues at S + 1;
* the last hard state written wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raftkv.raft.types import Entry, HardState, SnapshotMetadata


class LogGapError(Exception):
    """An entry would leave a hole in the log: the writer never does that, so the WAL
    no longer says what it wrote."""

    def __init__(self, last: int, index: int) -> None:
        self.last = last
        self.index = index
        super().__init__(f"entry {index} does not follow the log's last index {last}")


@dataclass(slots=True)
class Replay:
    """What the WAL says is durable."""

    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    """Contiguous and ascending; may start after 1 once old segments were released."""
    snapshots: list[SnapshotMetadata] = field(default_factory=list)
    """Snapshot markers in the retained segments, in write order."""


class LogReplayer:
    def __init__(self) -> None:
        self.replay = Replay()
        self._anchor: tuple[int, int] | None = None
        """(index, term) just before entries[0], when a marker told us."""

    def term_at(self, index: int) -> int | None:
        ents = self.replay.entries
        if ents:
            pos = index - ents[0].index
            if 0 <= pos < len(ents):
                return ents[pos].term
        if self._anchor is not None and self._anchor[0] == index:
            return self._anchor[1]
        return None

    def last_index(self) -> int | None:
        ents = self.replay.entries
        if ents:
            return ents[-1].index
        return self._anchor[0] if self._anchor is not None else None

    def entry(self, e: Entry) -> None:
        ents = self.replay.entries
        if not ents:
            # An empty log starts wherever the writer starts: at 1, after a snapshot, or
            # mid-log when the segments before were released.
            if self._anchor is not None and e.index != self._anchor[0] + 1:
                self._anchor = None
            ents.append(e)
            return
        first, last = ents[0].index, ents[-1].index
        if e.index == last + 1:
            ents.append(e)
        elif e.index > last + 1:
            raise LogGapError(last, e.index)
        elif e.index >= first:
            del ents[e.index - first :]
            ents.append(e)
        else:
            # Overwrites below the first retained entry: everything retained is newer
            # than e's predecessor, so all of it is superseded.
            ents.clear()
            self._anchor = None
            ents.append(e)

    def hard_state(self, hs: HardState) -> None:
        self.replay.hard_state = hs

    def snapshot(self, meta: SnapshotMetadata) -> None:
        self.replay.snapshots.append(meta)
        term = self.term_at(meta.index)
        if term == meta.term:
            return  # §7: the log matches the snapshot; retain the entries following it
        last = self.last_index()
        if term is not None or last is None or meta.index > last:
            # A conflicting entry at S, or a snapshot past the end: discard the log.
            self.replay.entries.clear()
            self._anchor = (meta.index, meta.term)
        # Otherwise the snapshot is older than the start of the retained log (its
        # segments were released): nothing to check against and nothing to discard.
