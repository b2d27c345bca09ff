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

import zlib
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import msgpack

from .errors import SnapshotError

MAGIC = b"RKVL"
VERSION = 1
_HEADER_LEN = len(MAGIC) + 1 + 4

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
    body: bytes = msgpack.packb(
        [next_id, [[lid, ttl, keys] for lid, ttl, keys in leases]], use_bin_type=True
    )
    return MAGIC + bytes((VERSION,)) + zlib.crc32(body).to_bytes(4, "big") + body


def decode(data: bytes) -> State:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SnapshotError("snapshot must be bytes")
    view = memoryview(data)
    if len(view) < _HEADER_LEN or view[:4] != MAGIC:
        raise SnapshotError("not a raftkv lease snapshot")
    if view[4] != VERSION:
        raise SnapshotError(f"unsupported lease snapshot version {view[4]}")
    body = view[_HEADER_LEN:]
    if zlib.crc32(body) != int.from_bytes(view[5:9], "big"):
        raise SnapshotError("lease snapshot checksum mismatch")
    try:
        obj = msgpack.unpackb(body, raw=False, use_list=True)
        return _build(obj)
    except SnapshotError:
        raise
    except Exception as exc:  # malformed msgpack or shapes: untrusted input
        raise SnapshotError(f"malformed lease snapshot: {exc!r}") from exc


def _int(x: Any) -> int:
    if type(x) is not int:
        raise SnapshotError(f"expected an int, got {type(x).__name__}")
    return x


def _bytes(x: Any) -> bytes:
    if type(x) is not bytes:
        raise SnapshotError(f"expected bytes, got {type(x).__name__}")
    return x


def _list(x: Any) -> list[Any]:
    if type(x) is not list:
        raise SnapshotError(f"expected an array, got {type(x).__name__}")
    return x


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
