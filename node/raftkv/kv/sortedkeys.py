"""A sorted set of keys for prefix range scans, without a third-party dependency.

A single sorted list costs O(n) per insert (a memmove of the whole pointer array, ~1 ms
at a million keys), which would stall the apply loop. This keeps the keys in chunks of
at most `2 * LOAD` sorted strings plus the list of each chunk's last key (the same
idea as `sortedcontainers.SortedList`): an insert or delete touches one small chunk and
a bisect over the chunk maxima, and a scan walks chunks in order.

Strings compare by code point, which is also UTF-8 byte order, so ranges agree with
what a byte-oriented client would expect. The MVCC key index keeps bytes keys in it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", str, bytes)

LOAD = 512


class SortedKeys(Generic[K]):
    """The caller (the store) guarantees `add` only adds absent keys and `remove` only
    removes present ones; the dict next to it already answers membership in O(1)."""

    __slots__ = ("_chunks", "_len", "_maxes")

    def __init__(self, sorted_unique: Iterable[K] = ()) -> None:
        keys = list(sorted_unique)
        self._chunks: list[list[K]] = [keys[i : i + LOAD] for i in range(0, len(keys), LOAD)]
        self._maxes: list[K] = [chunk[-1] for chunk in self._chunks]
        self._len = len(keys)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[K]:
        for chunk in self._chunks:
            yield from chunk

    def to_list(self) -> list[K]:
        """A copy in order; cheap (one pointer copy per key) for snapshot views."""
        out: list[K] = []
        for chunk in self._chunks:
            out.extend(chunk)
        return out

    def add(self, key: K) -> None:
        maxes = self._maxes
        self._len += 1
        if not maxes:
            self._chunks.append([key])
            maxes.append(key)
            return
        i = bisect_left(maxes, key)
        if i == len(maxes):
            i -= 1
            chunk = self._chunks[i]
            chunk.append(key)
            maxes[i] = key
        else:
            chunk = self._chunks[i]
            insort(chunk, key)
        if len(chunk) > 2 * LOAD:
            tail = chunk[LOAD:]
            del chunk[LOAD:]
            self._chunks.insert(i + 1, tail)
            maxes[i] = chunk[-1]
            maxes.insert(i + 1, tail[-1])

    def remove(self, key: K) -> None:
        maxes = self._maxes
        i = bisect_left(maxes, key)
        chunk = self._chunks[i]
        j = bisect_left(chunk, key)
        if j == len(chunk) or chunk[j] != key:
            raise KeyError(key)
        del chunk[j]
        self._len -= 1
        if not chunk:
            del self._chunks[i]
            del maxes[i]
            return
        maxes[i] = chunk[-1]
        # Merge underfull neighbours so heavy deletion cannot leave a long list of tiny
        # chunks (which would make the maxima list as long as the key set).
        if len(chunk) < LOAD // 4 and i + 1 < len(self._chunks):
            nxt = self._chunks[i + 1]
            if len(chunk) + len(nxt) <= 2 * LOAD:
                chunk.extend(nxt)
                del self._chunks[i + 1]
                del maxes[i + 1]
                maxes[i] = chunk[-1]

    def iter_from(self, start: K, *, inclusive: bool = True) -> Iterator[K]:
        """Keys >= start (or > start), ascending."""
        find = bisect_left if inclusive else bisect_right
        maxes = self._maxes
        i = find(maxes, start)
        if i == len(maxes):
            return
        chunks = self._chunks
        first = chunks[i]
        yield from first[find(first, start) :]
        for k in range(i + 1, len(chunks)):
            yield from chunks[k]
