"""One key's history: etcd's `keyIndex` (server/storage/mvcc/key_index.go).

A key's revisions are grouped in generations. A generation starts with the put that
creates the key and ends with the tombstone that deletes it; the last generation is
the current one, and it is empty while the key does not exist. For example, a key put
at 1, 2 and 3, deleted at 4, put again at 5 and deleted at 6 has::

    generations: [{1, 2, 3, 4(t)}, {5, 6(t)}, {}]

`compact(rev)` drops what no read at a revision >= rev can reach: whole generations
that ended at or before rev, and, in the generation alive at rev, every revision older
than the latest one at or before rev. Each generation remembers its `created`
revision and its `ver` (the number of puts ever made in it), so versions and create
revisions stay right after its first revisions are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kv import Revision

_NO_REVISION = Revision(0, 0)


class RevisionNotFound(LookupError):
    """No revision of the key is visible at the asked revision."""


@dataclass(slots=True)
class Generation:
    ver: int = 0
    """Puts ever made in this generation (a tombstone is counted too, as in etcd)."""
    created: Revision = _NO_REVISION
    revs: list[Revision] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.revs

    def latest_at_or_before(self, at_rev: int) -> int:
        """Index of the latest revision whose main <= at_rev, or -1."""
        revs = self.revs
        for i in range(len(revs) - 1, -1, -1):
            if revs[i].main <= at_rev:
                return i
        return -1


class KeyIndex:
    __slots__ = ("generations", "key", "modified")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.modified = _NO_REVISION
        """The revision of the key's last change (put or tombstone)."""
        self.generations: list[Generation] = [Generation()]

    def __repr__(self) -> str:
        return f"KeyIndex({self.key!r}, modified={self.modified}, gens={self.generations})"

    def is_empty(self) -> bool:
        """True when nothing is left: a single, empty generation."""
        return len(self.generations) == 1 and self.generations[0].is_empty()

    # -- writes --------------------------------------------------------------------

    def put(self, rev: Revision) -> None:
        if rev <= self.modified:
            raise ValueError(f"put at {rev} <= last change {self.modified} of {self.key!r}")
        g = self.generations[-1]
        if not g.revs:
            g.created = rev
        g.revs.append(rev)
        g.ver += 1
        self.modified = rev

    def tombstone(self, rev: Revision) -> None:
        """End the current generation. Raises RevisionNotFound when the key does not
        exist (its current generation is empty)."""
        if self.generations[-1].is_empty():
            raise RevisionNotFound(self.key)
        self.put(rev)
        self.generations.append(Generation())

    # -- reads ---------------------------------------------------------------------

    def get(self, at_rev: int) -> tuple[Revision, Revision, int]:
        """(mod revision, create revision, version) of the key as of `at_rev`; raises
        RevisionNotFound when the key did not exist then."""
        g = self.find_generation(at_rev)
        if g is None:
            raise RevisionNotFound(self.key)
        n = g.latest_at_or_before(at_rev)
        if n == -1:  # pragma: no cover - find_generation returned a later generation
            raise RevisionNotFound(self.key)
        return g.revs[n], g.created, g.ver - (len(g.revs) - n - 1)

    def find_generation(self, at_rev: int) -> Generation | None:
        """The generation holding the key's state at `at_rev`, or None when the key
        did not exist then (before its first put, or after a tombstone)."""
        gens = self.generations
        last = len(gens) - 1
        for i in range(last, -1, -1):
            g = gens[i]
            if not g.revs:
                continue
            if i != last and g.revs[-1].main <= at_rev:
                return None  # deleted at or before at_rev and not re-created since
            if g.revs[0].main <= at_rev:
                return g
        return None

    # -- compaction ----------------------------------------------------------------

    def compact(self, at_rev: int, available: set[Revision]) -> None:
        """Drop what reads at revisions >= at_rev cannot reach; add to `available`
        the revision at or before at_rev that such reads still need (if any)."""
        if self.is_empty():
            raise ValueError(f"compact of empty key index {self.key!r}")
        gens = self.generations
        gen_idx = 0
        # The first generation that is alive at at_rev or created after it.
        while gen_idx < len(gens) - 1 and gens[gen_idx].revs[-1].main <= at_rev:
            gen_idx += 1
        g = gens[gen_idx]
        rev_idx = g.latest_at_or_before(at_rev)
        if rev_idx != -1:
            available.add(g.revs[rev_idx])
        if rev_idx > 0:
            del g.revs[:rev_idx]
        # (etcd also drops a closed generation left holding only its tombstone; that
        # cannot happen here: a closed generation kept by the loop above ends with a
        # tombstone after at_rev, and keeps a put before it.)
        del gens[:gen_idx]

    def revisions_since(self, rev: int) -> list[Revision]:
        """Every kept revision whose main >= rev, oldest first (for watch catch-up)."""
        return [r for g in self.generations for r in g.revs if r.main >= rev]
