"""The data of a Raft snapshot of this member: the state machine (the KVStore snapshot
format) and the membership registry, wrapped as one msgpack array
`[SNAPSHOT_FORMAT, kv_bytes, registry_bytes]`.

The member writes it when it compacts its log and reads it when it restarts from, or
is sent, a snapshot; `raftkv snapshot restore` writes it to seed a new cluster.
"""

from __future__ import annotations

import msgpack

from .membership import Registry

SNAPSHOT_FORMAT = 1


def encode_state(kv_bytes: bytes, reg: Registry) -> bytes:
    out: bytes = msgpack.packb([SNAPSHOT_FORMAT, kv_bytes, reg.encode()], use_bin_type=True)
    return out


def decode_state(data: bytes) -> tuple[bytes, Registry]:
    version, kv_bytes, reg_bytes = msgpack.unpackb(data, raw=False)
    if version != SNAPSHOT_FORMAT:
        raise ValueError(f"unsupported snapshot format {version}")
    return bytes(kv_bytes), Registry.decode(reg_bytes)
