"""The frame every state-machine snapshot part is stored in (MVCC store, lessor):

    magic (4 bytes) | format version (1 byte) | crc32 of the body (4 bytes, big-endian) | body

with a msgpack body. Snapshots come from peers and backup files, so reading one never
trusts it: every failure is the caller's typed snapshot error, with a message that
names the part (``what``), and the shape checks below raise the same error.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import msgpack

_HEADER_LEN = 4 + 1 + 4

ErrorType = Callable[[str], Exception]


def seal(magic: bytes, version: int, obj: object) -> bytes:
    """``obj`` packed (deterministically: equal objects give equal bytes) and framed."""
    assert len(magic) == 4
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    return magic + bytes((version,)) + zlib.crc32(body).to_bytes(4, "big") + body


def unseal(data: object, magic: bytes, version: int, what: str, error: ErrorType) -> Any:
    """The unpacked body of a frame; ``error(message)`` for anything that is not one."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise error("snapshot must be bytes")
    view = memoryview(data)
    if len(view) < _HEADER_LEN or view[:4] != magic:
        raise error(f"not a raftkv {what}")
    if view[4] != version:
        raise error(f"unsupported {what} version {view[4]}")
    body = view[_HEADER_LEN:]
    if zlib.crc32(body) != int.from_bytes(view[5:9], "big"):
        raise error(f"{what} checksum mismatch")
    try:
        return msgpack.unpackb(body, raw=False, use_list=True)
    except Exception as exc:  # malformed msgpack: untrusted input
        raise error(f"malformed {what}: {exc!r}") from exc


def expect_int(x: Any, error: ErrorType) -> int:
    if type(x) is not int:
        raise error(f"expected an int, got {type(x).__name__}")
    return x


def expect_bytes(x: Any, error: ErrorType) -> bytes:
    if type(x) is not bytes:
        raise error(f"expected bytes, got {type(x).__name__}")
    return x


def expect_list(x: Any, error: ErrorType) -> list[Any]:
    if type(x) is not list:
        raise error(f"expected an array, got {type(x).__name__}")
    return x
