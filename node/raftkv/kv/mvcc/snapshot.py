"""The MVCC store's snapshot format: deterministic bytes, versioned, CRC-checked.

    b"RKVM" | format version (1 byte) | crc32 of the body (4 bytes, big-endian) | body

Format 2 (written since the key indexes are rebuilt on restore) has one msgpack array::

    [current_rev, compact_rev, kvs]
    kvs: [main, sub, key, create_revision, version, value, lease, ...]
         (7 scalars per kept revision, in revision order; mod_revision is main,
         create_revision 0 marks a tombstone)

Every kept revision carries what its key index needs: a generation starts at a put
and ends at a tombstone, the first kept put of a generation names its create
revision, and its last put (or the one before its tombstone) its version. So the
indexes are rebuilt from the kvs instead of travelling beside them, which made
snapshots of a large history about five times dearer to write (the member writes one
every `--snapshot-count` entries; it reads one only at start or catch-up).

Format 1 also stored the key indexes, ``[current_rev, compact_rev, index, kvs]`` with
``index: [[key, modified_main, modified_sub, [[ver, created_main, created_sub,
[main, sub, ...]], ...]], ...]``; it is still read.

Equal stores give equal bytes, and a restored store answers every later call as the
original would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..frame import expect_bytes, expect_int, expect_list, seal, unseal
from .errors import SnapshotError
from .index import TreeIndex
from .key_index import Generation, KeyIndex
from .kv import KeyValue, Revision

MAGIC = b"RKVM"
VERSION = 2
_READABLE = (1, 2)
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

    Taking the view is one C-speed copy of the kvs dict (references to immutable
    revisions and kvs), cheap enough for the member's loop; building the msgpack array
    and packing it, which is all the rest of the cost, happen in `encode_later` while
    the store goes on. The index is not needed: restore rebuilds it."""
    del index  # rebuilt from the kvs on restore
    kv_view = dict(kvs)

    def encode_later() -> bytes:
        flat: list[object] = []
        extend = flat.extend
        # The store inserts kvs in revision order and compaction only deletes, so the
        # dict is already sorted; equal stores give equal bytes.
        for r, kv in kv_view.items():
            extend((r.main, r.sub, kv.key, kv.create_revision, kv.version, kv.value, kv.lease))
        return seal(MAGIC, VERSION, [current_rev, compact_rev, flat])

    return encode_later


def decode(data: bytes) -> State:
    version = _version_of(data)
    obj = unseal(data, MAGIC, version, "mvcc snapshot", SnapshotError)
    try:
        return _build_v1(obj) if version == 1 else _build(obj)
    except SnapshotError:
        raise
    except Exception as exc:  # malformed shapes: untrusted input
        raise SnapshotError(f"malformed mvcc snapshot: {exc!r}") from exc


def _version_of(data: object) -> int:
    """The frame's version when it is one this code reads; else VERSION, so that
    `unseal` reports the problem (not bytes, wrong magic, unsupported version)."""
    if isinstance(data, bytes | bytearray | memoryview) and len(data) > 4:
        v = memoryview(data)[4]
        if v in _READABLE:
            return v
    return VERSION


def _int(x: Any) -> int:
    return expect_int(x, SnapshotError)


def _bytes(x: Any) -> bytes:
    return expect_bytes(x, SnapshotError)


def _revisions(current_rev: Any, compact_rev: Any) -> tuple[int, int]:
    current_rev, compact_rev = _int(current_rev), _int(compact_rev)
    if current_rev < 1 or compact_rev > current_rev or compact_rev < -1:
        raise SnapshotError("bad store revisions")
    return current_rev, compact_rev


def _kvs(flat: Any, current_rev: int, ordered: bool) -> dict[Revision, KeyValue]:
    """The kvs array as a dict in revision order. Format 2 must list them in strictly
    increasing revision order, as it is written (the store relies on the order)."""
    flat = expect_list(flat, SnapshotError)
    if len(flat) % _KV_FIELDS:
        raise SnapshotError("kv array length is not a multiple of 7")
    kvs: dict[Revision, KeyValue] = {}
    last = Revision(0, 0)
    for i in range(0, len(flat), _KV_FIELDS):
        main, sub, key, create, version, value, lease = flat[i : i + _KV_FIELDS]
        r = Revision(_int(main), _int(sub))
        if not 1 < r.main <= current_rev or r in kvs or (ordered and r <= last):
            raise SnapshotError(f"bad, duplicate or out-of-order kv revision {r}")
        last = r
        kvs[r] = KeyValue(
            _bytes(key), _int(create), r.main, _int(version), _bytes(value), _int(lease)
        )
    return kvs


def _build(obj: Any) -> State:
    current_rev, compact_rev, flat = expect_list(obj, SnapshotError)
    current_rev, compact_rev = _revisions(current_rev, compact_rev)
    kvs = _kvs(flat, current_rev, ordered=True)
    return State(current_rev, compact_rev, rebuild_index(kvs), kvs)


def rebuild_index(kvs: dict[Revision, KeyValue]) -> TreeIndex:
    """The key indexes the kvs (in revision order) imply; SnapshotError when they
    are not a history a store can have kept."""
    per_key: dict[bytes, list[tuple[Revision, KeyValue]]] = {}
    for r, kv in kvs.items():
        revs = per_key.get(kv.key)
        if revs is None:
            per_key[kv.key] = [(r, kv)]
        else:
            revs.append((r, kv))
    return TreeIndex.from_key_indexes([_key_index(k, revs) for k, revs in per_key.items()])


def _key_index(key: bytes, revs: list[tuple[Revision, KeyValue]]) -> KeyIndex:
    ki = KeyIndex(key)
    gens: list[Generation] = []
    g: Generation | None = None
    for r, kv in revs:
        create = kv.create_revision
        if g is None:
            if create == 0:
                raise SnapshotError(f"history of {key!r} has a generation without a put")
            # The generation's first revision is gone after compaction unless this
            # is it; only its main revision is ever read.
            g = Generation(0, r if create == r.main else Revision(create, 0), [])
        elif create not in (0, g.created.main):
            raise SnapshotError(f"history of {key!r} changes create revision at {r}")
        g.revs.append(r)
        if create == 0:  # a tombstone ends the generation; etcd counts it as a version
            g.ver += 1
            gens.append(g)
            g = None
        else:
            g.ver = kv.version
    gens.append(Generation() if g is None else g)
    ki.generations = gens
    ki.modified = revs[-1][0]
    return ki


def _build_v1(obj: Any) -> State:
    current_rev, compact_rev, idx, flat = obj
    current_rev, compact_rev = _revisions(current_rev, compact_rev)
    kvs = _kvs(flat, current_rev, ordered=False)
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
