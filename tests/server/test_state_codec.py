"""The data of the member's Raft snapshots: KV bytes and the registry, versioned."""

from __future__ import annotations

import msgpack
import pytest

from raftkv.server.membership import MemberInfo, Registry
from raftkv.server.state_codec import SNAPSHOT_FORMAT, decode_state, encode_state


def test_round_trip() -> None:
    reg = Registry({1: MemberInfo(1, "m1", ("http://p:1",), ("http://c:1",))}, {4, 2})
    kv, back = decode_state(encode_state(b"kv-bytes", reg))
    assert kv == b"kv-bytes"
    assert back == reg


def test_the_format_is_a_versioned_msgpack_array() -> None:
    reg = Registry()
    data = encode_state(b"x", reg)
    assert msgpack.unpackb(data, raw=False) == [SNAPSHOT_FORMAT, b"x", reg.encode()]
    assert SNAPSHOT_FORMAT == 1


def test_an_unknown_version_is_refused() -> None:
    data = msgpack.packb([2, b"x", Registry().encode()], use_bin_type=True)
    with pytest.raises(ValueError, match="unsupported snapshot format 2"):
        decode_state(data)
