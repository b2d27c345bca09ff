"""etcd's key-range conventions, in one place.

A request names keys with `key` and `range_end`:

- `range_end == b""`: just `key`;
- `range_end == b"\\0"`: every key >= `key` (so `key=b"\\0", range_end=b"\\0"` is all keys);
- otherwise the half-open interval [key, range_end), empty when range_end <= key.

`prefix_end(p)` is the range_end that selects every key starting with `p`.
"""

from __future__ import annotations

ALL_KEYS_END = b"\x00"


def prefix_end(prefix: bytes) -> bytes:
    """etcd's `GetPrefixRangeEnd`: `prefix` with its last byte below 0xff incremented
    and what follows it dropped; `b"\\0"` (no upper bound) when there is none."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes((prefix[i] + 1,))
    return ALL_KEYS_END


def upper_bound(range_end: bytes) -> bytes | None:
    """The exclusive upper bound of a range with this (non-empty) range_end; None
    when unbounded."""
    return None if range_end == ALL_KEYS_END else range_end


def in_range(k: bytes, key: bytes, range_end: bytes) -> bool:
    if not range_end:
        return k == key
    if k < key:
        return False
    end = upper_bound(range_end)
    return end is None or k < end
