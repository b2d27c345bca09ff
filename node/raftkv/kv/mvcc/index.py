"""All keys' histories, in key order: etcd's `treeIndex` (mvcc/index.go).

Maps a key to its `KeyIndex` and keeps the keys sorted for range scans. A key stays
here while any revision of it is kept, including after it is deleted; compaction
removes keys left with nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..sortedkeys import SortedKeys
from .key_index import KeyIndex, RevisionNotFound
from .kv import Revision
from .ranges import upper_bound


class TreeIndex:
    """Key indexes by key, and the keys in order in chunked sorted lists
    (`SortedKeys`): a first put of a key touches one small chunk, where one sorted
    list would move the whole key array (tens of microseconds at 100,000 keys)."""

    __slots__ = ("_index", "_keys")

    def __init__(self) -> None:
        self._index: dict[bytes, KeyIndex] = {}
        self._keys: SortedKeys[bytes] = SortedKeys()

    def __len__(self) -> int:
        return len(self._index)

    def key_indexes(self) -> Iterator[KeyIndex]:
        """Every key index in key order."""
        index = self._index
        for k in self._keys:
            yield index[k]

    @classmethod
    def from_key_indexes(cls, kis: list[KeyIndex]) -> TreeIndex:
        """An index of distinct keys built at once (snapshot restore): one sort,
        where inserting them one by one would move the key array for each."""
        t = cls()
        t._index = {ki.key: ki for ki in kis}
        if len(t._index) != len(kis):
            raise ValueError("duplicate key index")
        t._keys = SortedKeys(sorted(t._index))
        return t

    def insert(self, ki: KeyIndex) -> None:
        """Add a whole key index (snapshot restore); the key must be new."""
        if ki.key in self._index:
            raise ValueError(f"duplicate key index {ki.key!r}")
        self._index[ki.key] = ki
        self._keys.add(ki.key)

    # -- writes --------------------------------------------------------------------

    def put(self, key: bytes, rev: Revision) -> None:
        ki = self._index.get(key)
        if ki is None:
            ki = KeyIndex(key)
            self.insert(ki)
        ki.put(rev)

    def tombstone(self, key: bytes, rev: Revision) -> None:
        ki = self._index.get(key)
        if ki is None:
            raise RevisionNotFound(key)
        ki.tombstone(rev)

    # -- reads ---------------------------------------------------------------------

    def get(self, key: bytes, at_rev: int) -> tuple[Revision, Revision, int] | None:
        ki = self._index.get(key)
        if ki is None:
            return None
        try:
            return ki.get(at_rev)
        except RevisionNotFound:
            return None

    def visit(self, key: bytes, range_end: bytes) -> Iterator[KeyIndex]:
        """Key indexes of the keys in the range (see `ranges`), in key order."""
        if not range_end:
            ki = self._index.get(key)
            if ki is not None:
                yield ki
            return
        end = upper_bound(range_end)
        index = self._index
        for k in self._keys.iter_from(key):
            if end is not None and k >= end:
                return
            yield index[k]

    def revisions(
        self, key: bytes, range_end: bytes, at_rev: int, limit: int = 0
    ) -> tuple[list[Revision], int]:
        """The mod revisions of the keys alive at `at_rev` in the range, at most
        `limit` of them when limit > 0, and how many such keys there are in all."""
        revs: list[Revision] = []
        total = 0
        for ki in self.visit(key, range_end):
            try:
                rev, _, _ = ki.get(at_rev)
            except RevisionNotFound:
                continue
            if limit <= 0 or len(revs) < limit:
                revs.append(rev)
            total += 1
        return revs, total

    def count(self, key: bytes, range_end: bytes, at_rev: int) -> int:
        return self.revisions(key, range_end, at_rev, limit=1)[1]

    def keys_alive(self, key: bytes, range_end: bytes, at_rev: int) -> list[bytes]:
        out: list[bytes] = []
        for ki in self.visit(key, range_end):
            if ki.find_generation(at_rev) is not None:
                out.append(ki.key)
        return out

    # -- compaction ----------------------------------------------------------------

    def compact(self, at_rev: int) -> set[Revision]:
        """Compact every key index; returns the revisions at or before at_rev that
        must stay readable. Keys left with nothing are removed."""
        available: set[Revision] = set()
        emptied: list[bytes] = []
        for ki in self.key_indexes():
            ki.compact(at_rev, available)
            if ki.is_empty():
                emptied.append(ki.key)
        if emptied:
            gone = set(emptied)
            for k in emptied:
                del self._index[k]
            self._keys = SortedKeys([k for k in self._keys if k not in gone])
        return available
