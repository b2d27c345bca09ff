"""The MVCC store's snapshot format: deterministic bytes, versioned, CRC-checked.

    b"RKVM" | format version (1 byte) | crc32 of the body (4 bytes, big-endian) | body

The body is one msgpack array::

    [current_rev, compact_rev, index, kvs]
    index: [[key, modified_main, modified_sub, [[ver, created_main, created_sub,
             [main, sub, main, sub, ...]], ...]], ...]      in key order
    kvs:   [main, sub, key, create_revision, version, value, lease, ...]
           (7 scalars per kept revision, in revision order; mod_revision is main,
           create_revision 0 marks a tombstone)

Equal stores give equal bytes, and a restored store answers every later call as the
original would: the key indexes are stored as they are, not rebuilt, because
compaction leaves generations whose first revisions are gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..frame import expect_bytes, expect_int, seal, unseal
from .errors import SnapshotError
from .index import TreeIndex
from .key_index import Generation, KeyIndex
from .kv import KeyValue, Revision

MAGIC = b"RKVM"
VERSION = 1
_KV_FIELDS = 7


@dataclass(slots=True)
class State:
    current_rev: int
    compact_rev: int
    index: TreeIndex
    kvs: dict[Revision, KeyValue]


def encode(
    current_rev: int, compact_rev: int, index: TreeIndex, kvs: dict[Revision, KeyValue]
) -> bytes:
    return capture(current_rev, compact_rev, index, kvs)()


def capture(
    current_rev: int, compact_rev: int, index: TreeIndex, kvs: dict[Revision, KeyValue]
) -> Callable[[], bytes]:
    """The state as of now, and a function that encodes it later, on any thread.

    Taking the view copies only containers (the revision lists of each generation and
    the kvs dict: C-speed copies of references to immutable tuples and kvs), so it is
    cheap enough for the member's loop; building the msgpack arrays and packing them,
    which is most of the cost, happen in `encode_later` while the store goes on."""
    idx_view = [
        (ki.key, ki.modified, [(g.ver, g.created, list(g.revs)) for g in ki.generations])
        for ki in index.key_indexes()
    ]
    kv_view = dict(kvs)

    def encode_later() -> bytes:
        idx = [
            [
                key,
                mod.main,
                mod.sub,
                [[ver, c.main, c.sub, [x for r in revs for x in r]] for ver, c, revs in gens],
            ]
            for key, mod, gens in idx_view
        ]
        flat: list[object] = []
        extend = flat.extend
        # The store inserts kvs in revision order and compaction only deletes, so the
        # dict is already sorted; equal stores still give equal bytes.
        for r, kv in kv_view.items():
            extend((r.main, r.sub, kv.key, kv.create_revision, kv.version, kv.value, kv.lease))
        return seal(MAGIC, VERSION, [current_rev, compact_rev, idx, flat])

    return encode_later


def decode(data: bytes) -> State:
    obj = unseal(data, MAGIC, VERSION, "mvcc snapshot", SnapshotError)
    try:
        return _build(obj)
    except SnapshotError:
        raise
    except Exception as exc:  # malformed shapes: untrusted input
        raise SnapshotError(f"malformed mvcc snapshot: {exc!r}") from exc


def _int(x: Any) -> int:
    return expect_int(x, SnapshotError)


def _bytes(x: Any) -> bytes:
    return expect_bytes(x, SnapshotError)


def _build(obj: Any) -> State:
    current_rev, compact_rev, idx, flat = obj
    current_rev, compact_rev = _int(current_rev), _int(compact_rev)
    if current_rev < 1 or compact_rev > current_rev or compact_rev < -1:
        raise SnapshotError("bad store revisions")
    if len(flat) % _KV_FIELDS:
        raise SnapshotError("kv array length is not a multiple of 7")
    kvs: dict[Revision, KeyValue] = {}
    for i in range(0, len(flat), _KV_FIELDS):
        main, sub, key, create, version, value, lease = flat[i : i + _KV_FIELDS]
        r = Revision(_int(main), _int(sub))
        if not 1 < r.main <= current_rev or r in kvs:
            raise SnapshotError(f"bad or duplicate kv revision {r}")
        kvs[r] = KeyValue(
            _bytes(key), _int(create), r.main, _int(version), _bytes(value), _int(lease)
        )
    index = TreeIndex()
    referenced: set[Revision] = set()
    for entry in idx:
        key, mod_main, mod_sub, gens = entry
        ki = KeyIndex(_bytes(key))
        ki.modified = Revision(_int(mod_main), _int(mod_sub))
        ki.generations = []
        for ver, c_main, c_sub, revs in gens:
            if len(revs) % 2:
                raise SnapshotError("odd revision array")
            g = Generation(_int(ver), Revision(_int(c_main), _int(c_sub)))
            g.revs = [Revision(_int(revs[j]), _int(revs[j + 1])) for j in range(0, len(revs), 2)]
            for r in g.revs:
                kv = kvs.get(r)
                if kv is None or kv.key != ki.key:
                    raise SnapshotError(f"key index of {ki.key!r} names a missing kv {r}")
                referenced.add(r)
            ki.generations.append(g)
        if not ki.generations or ki.is_empty():
            raise SnapshotError(f"empty key index {ki.key!r}")
        index.insert(ki)
    if len(referenced) != len(kvs):
        raise SnapshotError("snapshot holds kvs no key index names")
    return State(current_rev, compact_rev, index, kvs)
