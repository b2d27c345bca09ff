"""The commands carried in the data of NORMAL Raft entries, and their codec.

A command is decided once (by the proposer) and then decoded on every member for as long
as the entry stays in the log, so the encoding is a versioned, positional msgpack array:
no field names to pay for on every entry, and a leading format number so a future layout
can be told apart from this one. Decoding is total: a committed entry that does not
decode must fail the same way on every member (deterministically), never crash the
apply loop, so every malformed input raises `CommandDecodeError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import msgpack

FORMAT_VERSION = 1
"""First element of every encoded command; bump it when the layout changes."""

MAX_REQUEST_ID_LEN = 64
"""Bounds the dedup table's memory per entry; proposers send 16 random bytes."""

_MAX_REVISION = (1 << 64) - 1


class Op(IntEnum):
    NOOP = 0
    """Changes no key; still gets a revision and a dedup slot (a write barrier)."""
    PUT = 1
    DELETE = 2


_OPS = {int(op): op for op in Op}


class CommandError(ValueError):
    """A command cannot be encoded (e.g. a key that is not valid Unicode)."""

    code = "invalid_command"


class CommandDecodeError(CommandError):
    """The bytes are not a command of a format this member understands."""

    code = "undecodable_command"


@dataclass(frozen=True, slots=True)
class Command:
    """One client write.

    `request_id` identifies the logical write across client retries: the store applies
    a given id at most once and replays the original result for repeats (b"" opts out).
    `if_match` is a compare-and-swap on the key's revision; an absent key has revision
    0, so `if_match=0` also means "must not exist". `if_none_match` is HTTP's
    `If-None-Match: *` (create only). Both may be set; both must then hold.
    """

    op: Op
    key: str
    value: bytes = b""
    request_id: bytes = b""
    if_match: int | None = None
    if_none_match: bool = False

    def encode(self) -> bytes:
        try:
            return msgpack.packb(  # type: ignore[no-any-return]
                [
                    FORMAT_VERSION,
                    self.op,
                    self.key,
                    self.value,
                    self.request_id,
                    self.if_match,
                    self.if_none_match,
                ],
                use_bin_type=True,
            )
        except Exception as exc:  # lone surrogates in the key, wrong field types
            raise CommandError(f"cannot encode command: {exc}") from exc

    @staticmethod
    def decode(data: bytes) -> Command:
        try:
            obj = msgpack.unpackb(data, raw=False, use_list=False, max_map_len=0, max_ext_len=0)
        except Exception as exc:  # msgpack raises several types; callers want one
            raise CommandDecodeError(f"not a command: {exc}") from exc
        if type(obj) is not tuple or len(obj) != 7:
            raise CommandDecodeError("not a command: expected a 7-element array")
        version, op, key, value, request_id, if_match, if_none_match = obj
        if version != FORMAT_VERSION or type(version) is not int:
            raise CommandDecodeError(f"unsupported command format {version!r}")
        kind = _OPS.get(op) if type(op) is int else None
        if kind is None:
            raise CommandDecodeError(f"unknown op {op!r}")
        if type(key) is not str:
            raise CommandDecodeError("key must be a string")
        if type(value) is not bytes:
            raise CommandDecodeError("value must be bytes")
        if type(request_id) is not bytes or len(request_id) > MAX_REQUEST_ID_LEN:
            raise CommandDecodeError("request id must be at most 64 bytes")
        if if_match is not None and (
            type(if_match) is not int or not 0 <= if_match <= _MAX_REVISION
        ):
            raise CommandDecodeError("if_match must be a revision or nil")
        if type(if_none_match) is not bool:
            raise CommandDecodeError("if_none_match must be a boolean")
        return Command(kind, key, value, request_id, if_match, if_none_match)
