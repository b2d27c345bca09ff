"""The lessor's snapshot format: deterministic bytes, versioned, CRC-checked.

    b"RKVL" | format version (1 byte) | crc32 of the body (4 bytes, big-endian) | body

The body is one msgpack array::

    [next_id, [[id, ttl, [key, ...]], ...]]     leases in id order, keys in order

Only the replicated state is kept: ids, granted TTLs, attached keys and the cursor of
id allocation. Expiry times are not (only the leader counts time, and a restored
lessor starts demoted). Equal lessors give equal bytes; anything that is not the
canonical form (unsorted, duplicated, out of range) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ..frame import expect_bytes, expect_int, expect_list, seal, unseal
from .errors import SnapshotError

MAGIC = b"RKVL"
VERSION = 1

MAX_LEASE_TTL = 9_000_000_000
"""etcd's MaxLeaseTTL, in seconds."""
MIN_LEASE_ID = -(2**63)
MAX_LEASE_ID = 2**63 - 1
"""Lease ids are etcd's int64 (0 is NoLease)."""


@dataclass(slots=True)
class State:
    next_id: int
    leases: dict[int, tuple[int, set[bytes]]]
    """id -> (granted TTL, attached keys)"""


def encode(next_id: int, leases: list[tuple[int, int, list[bytes]]]) -> bytes:
    """`leases`: (id, ttl, keys) in id order, keys sorted."""
    return seal(MAGIC, VERSION, [next_id, [[lid, ttl, keys] for lid, ttl, keys in leases]])


def decode(data: bytes) -> State:
    obj = unseal(data, MAGIC, VERSION, "lease snapshot", SnapshotError)
    try:
        return _build(obj)
    except SnapshotError:
        raise
    except Exception as exc:  # malformed shapes: untrusted input
        raise SnapshotError(f"malformed lease snapshot: {exc!r}") from exc


def _int(x: Any) -> int:
    return expect_int(x, SnapshotError)


def _bytes(x: Any) -> bytes:
    return expect_bytes(x, SnapshotError)


def _list(x: Any) -> list[Any]:
    return expect_list(x, SnapshotError)


def _build(obj: Any) -> State:
    next_id, entries = _list(obj)
    next_id = _int(next_id)
    if not 1 <= next_id <= MAX_LEASE_ID:
        raise SnapshotError(f"bad next lease id {next_id}")
    leases: dict[int, tuple[int, set[bytes]]] = {}
    owner: dict[bytes, int] = {}
    prev_id: int | None = None
    for entry in _list(entries):
        lid, ttl, keys = _list(entry)
        lid, ttl = _int(lid), _int(ttl)
        if lid == 0 or not MIN_LEASE_ID <= lid <= MAX_LEASE_ID:
            raise SnapshotError(f"bad lease id {lid}")
        if prev_id is not None and lid <= prev_id:
            raise SnapshotError("leases out of order or duplicated")
        prev_id = lid
        if not 1 <= ttl <= MAX_LEASE_TTL:
            raise SnapshotError(f"bad TTL {ttl} of lease {lid:x}")
        key_list = [_bytes(k) for k in _list(keys)]
        if any(a >= b for a, b in pairwise(key_list)):
            raise SnapshotError(f"keys of lease {lid:x} out of order or duplicated")
        for k in key_list:
            if k in owner:
                raise SnapshotError(f"key {k!r} attached to two leases")
            owner[k] = lid
        leases[lid] = (ttl, set(key_list))
    return State(next_id, leases)
