"""The command codec: round trips, and every malformed entry fails with one typed error
(a committed entry must fail identically on every member, never crash the apply loop)."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.kv import Command, CommandDecodeError, CommandError, Op

keys = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
commands = st.builds(
    Command,
    op=st.sampled_from(Op),
    key=keys,
    value=st.binary(max_size=64),
    request_id=st.one_of(st.just(b""), st.binary(min_size=16, max_size=16)),
    if_match=st.one_of(st.none(), st.integers(0, 2**64 - 1)),
    if_none_match=st.booleans(),
)


@given(commands)
def test_round_trip(cmd: Command) -> None:
    assert Command.decode(cmd.encode()) == cmd


def test_encoding_is_a_compact_array() -> None:
    data = Command(Op.PUT, "k", b"v", b"r" * 16).encode()
    assert msgpack.unpackb(data) == [1, 1, "k", b"v", b"r" * 16, None, False]
    assert len(data) < 32


@given(st.binary(max_size=64))
def test_garbage_raises_typed_error(data: bytes) -> None:
    with contextlib.suppress(CommandDecodeError):
        Command.decode(data)


@given(commands, st.data())
def test_mutated_encodings_decode_or_raise_typed_error(cmd: Command, data: st.DataObject) -> None:
    raw = bytearray(cmd.encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        with contextlib.suppress(CommandDecodeError):
            Command.decode(candidate)


@pytest.mark.parametrize(
    "fields",
    [
        [2, 1, "k", b"", b"", None, False],  # unknown format version
        [1, 9, "k", b"", b"", None, False],  # unknown op
        [1, True, "k", b"", b"", None, False],  # bool is not an op
        [1, 1, b"k", b"", b"", None, False],  # key must be str
        [1, 1, "k", "v", b"", None, False],  # value must be bytes
        [1, 1, "k", b"", b"x" * 65, None, False],  # request id too long
        [1, 1, "k", b"", b"", -1, False],  # negative revision
        [1, 1, "k", b"", b"", 1.5, False],  # non-integer revision
        [1, 1, "k", b"", b"", None, 1],  # if_none_match must be bool
        [1, 1, "k", b"", b"", None],  # wrong arity
        {"op": 1},  # a map
    ],
)
def test_invalid_fields_are_rejected(fields: object) -> None:
    with pytest.raises(CommandDecodeError):
        Command.decode(msgpack.packb(fields, use_bin_type=True))


def test_non_bytes_input_is_a_decode_error() -> None:
    with pytest.raises(CommandDecodeError):
        Command.decode(None)  # type: ignore[arg-type]


def test_unencodable_key_raises_command_error() -> None:
    with pytest.raises(CommandError):
        Command(Op.PUT, "\ud800").encode()
