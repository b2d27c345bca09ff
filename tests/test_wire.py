"""The peer codec: every network message type round-trips, and no input -- random,
truncated or mutated -- escapes as anything but WireError."""

from __future__ import annotations

import contextlib
import zlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkv import wire
from raftkv.raft.types import (
    LOCAL_MESSAGES,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from raftkv.wire import (
    WireError,
    decode_messages,
    decode_snapshot,
    encode_messages,
    encode_snapshot,
)

U64 = st.integers(0, 2**64 - 1)
IDS = st.integers(1, 2**64 - 1)
NETWORK_TYPES = [t for t in MessageType if t not in LOCAL_MESSAGES]

entries = st.builds(
    Entry,
    term=U64,
    index=IDS,
    type=st.sampled_from(EntryType),
    data=st.binary(max_size=32),
)


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    ids = draw(st.lists(IDS, unique=True, max_size=6))
    cut = draw(st.integers(0, len(ids)))
    return ConfState(tuple(ids[:cut]), tuple(ids[cut:]))


snapshots = st.builds(
    Snapshot,
    metadata=st.builds(SnapshotMetadata, index=U64, term=U64, conf_state=conf_states()),
    data=st.binary(max_size=64),
)


@st.composite
def messages(draw: st.DrawFn, mtype: MessageType | None = None) -> Message:
    t = mtype if mtype is not None else draw(st.sampled_from(NETWORK_TYPES))
    return Message(
        type=t,
        to=draw(IDS),
        sender=draw(IDS),
        term=draw(U64),
        log_term=draw(U64),
        index=draw(U64),
        entries=tuple(draw(st.lists(entries, max_size=3))),
        commit=draw(U64),
        snapshot=draw(snapshots) if t == MessageType.SNAP else None,
        reject=draw(st.booleans()),
        reject_hint=draw(U64),
        context=draw(st.binary(max_size=16)),
    )


@pytest.mark.parametrize("mtype", NETWORK_TYPES, ids=lambda t: t.name)
@settings(max_examples=30)
@given(data=st.data())
def test_every_network_type_round_trips(mtype: MessageType, data: st.DataObject) -> None:
    msg = data.draw(messages(mtype))
    (back,) = decode_messages(encode_messages([msg]))
    assert back == msg
    assert type(back.type) is MessageType
    assert all(type(e) is Entry and type(e.type) is EntryType for e in back.entries)


@given(st.lists(messages(), max_size=8))
def test_batches_round_trip(msgs: list[Message]) -> None:
    assert decode_messages(encode_messages(msgs)) == msgs


def test_fast_entry_construction_matches_the_constructor() -> None:
    made = wire._make_entry(3, 4, EntryType.CONF_CHANGE, b"x")
    assert made == Entry(3, 4, EntryType.CONF_CHANGE, b"x")
    assert hash(made) == hash(Entry(3, 4, EntryType.CONF_CHANGE, b"x"))
    with pytest.raises(AttributeError):
        made.term = 9  # type: ignore[misc]


@pytest.mark.parametrize("mtype", sorted(LOCAL_MESSAGES), ids=lambda t: t.name)
def test_local_messages_never_cross_the_network(mtype: MessageType) -> None:
    msg = Message(mtype, to=1, sender=2)
    with pytest.raises(WireError):
        encode_messages([msg])
    fields = [int(mtype), 1, 2, 0, 0, 0, 0, False, 0, [], None, b""]
    with pytest.raises(WireError):
        decode_messages(b"\x01M" + msgpack.packb([fields], use_bin_type=True))


def _frame(*fields: object) -> bytes:
    body: bytes = msgpack.packb([list(fields)], use_bin_type=True)
    return b"\x01M" + body


GOOD = [int(MessageType.APP), 2, 1, 5, 5, 9, 9, False, 0, [[5, 10, 0, b"d"]], None, b""]


def test_reference_frame_is_valid() -> None:
    assert decode_messages(_frame(*GOOD))[0].entries == (Entry(5, 10, EntryType.NORMAL, b"d"),)


def _with(i: int, value: object) -> list[object]:
    fields = list(GOOD)
    fields[i] = value
    return fields


@pytest.mark.parametrize(
    "fields",
    [
        _with(0, 99),  # unknown type
        _with(0, True),
        _with(1, 0),  # to nobody
        _with(2, 0),  # from nobody
        _with(3, -1),  # negative term
        _with(3, -(2**63)),  # most negative int64
        _with(4, 1.0),  # float
        _with(5, "9"),
        _with(6, None),
        _with(7, 0),  # reject must be bool
        _with(8, True),  # bool is not an int
        _with(9, [[5, 10, 7, b"d"]]),  # unknown entry type
        _with(9, [[-1, 0, 0, b"d"]]),  # negative entry term
        _with(9, [[5, 10, 0, "d"]]),  # str data
        _with(9, [[5, 10, 0]]),  # short entry
        _with(9, None),
        _with(10, [1, 1, [1], [], b""]),  # APP carrying a snapshot
        _with(11, "ctx"),
        GOOD[:-1],  # wrong arity
    ],
)
def test_invalid_fields_are_rejected(fields: list[object]) -> None:
    with pytest.raises(WireError):
        decode_messages(_frame(*fields))


@pytest.mark.parametrize(
    "snap",
    [
        None,  # SNAP without a snapshot
        [1, 1, [1, 1], [], b""],  # duplicate voter
        [1, 1, [1], [1], b""],  # voter and learner
        [1, 1, [0], [], b""],  # member id 0
        [1, 1, [1], [], "data"],
        [1, 1, [1], []],
    ],
)
def test_invalid_snapshot_messages_are_rejected(snap: object) -> None:
    fields = [int(MessageType.SNAP), 2, 1, 5, 0, 0, 0, False, 0, [], snap, b""]
    with pytest.raises(WireError):
        decode_messages(_frame(*fields))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x02M\x90",  # future version
        b"\x01S\x90",  # a snapshot blob is not a message frame
        b"\x01M",
        b"\x01M\x90\x90",  # trailing data
        b"\x01M\x80",  # a map
        b"\x01M\x91\x80",
        b"\x01M\xc7\x01\x05x",  # ext type
        b"\x01M" + b"\x91" * 10_000,  # deep nesting
        b"\x01M\xdd\xff\xff\xff\xff",  # array header claiming 2**32 elements
        b"\x01M\xc6\xff\xff\xff\xff",  # bin header claiming 4 GiB
    ],
)
def test_malformed_frames_raise_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_messages(data)


def test_oversized_frames_are_refused_before_parsing() -> None:
    frame = encode_messages([Message(MessageType.HEARTBEAT, 1, 2, context=b"x" * 100)])
    with pytest.raises(WireError):
        decode_messages(frame, max_size=len(frame) - 1)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_wire_error(data: bytes) -> None:
    for candidate in (data, b"\x01M" + data):
        with contextlib.suppress(WireError):
            decode_messages(candidate)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=4), st.data())
def test_truncated_and_mutated_frames_only_raise_wire_error(
    msgs: list[Message], data: st.DataObject
) -> None:
    frame = bytearray(encode_messages(msgs))
    cut = data.draw(st.integers(0, len(frame) - 1))
    with contextlib.suppress(WireError):
        decode_messages(bytes(frame[:cut]))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_messages(bytes(frame))
    except WireError:
        return
    # Whatever survives a mutation still satisfies the invariants the core relies on.
    for m in decoded:
        assert m.type not in LOCAL_MESSAGES
        assert m.to > 0
        assert m.sender > 0
        assert (m.snapshot is not None) == (m.type == MessageType.SNAP)


# -- snapshot blobs ----------------------------------------------------------------


@given(snapshots)
def test_snapshot_blob_round_trips(snap: Snapshot) -> None:
    assert decode_snapshot(encode_snapshot(snap)) == snap


def test_large_snapshot_round_trips() -> None:
    snap = Snapshot(SnapshotMetadata(10, 2, ConfState((1, 2, 3), (4,))), bytes(range(256)) * 40_000)
    blob = encode_snapshot(snap)
    assert decode_snapshot(bytearray(blob)) == snap
    assert decode_snapshot(memoryview(blob)) == snap


@given(snapshots, st.data())
def test_any_corruption_of_a_snapshot_blob_is_detected(snap: Snapshot, data: st.DataObject) -> None:
    blob = bytearray(encode_snapshot(snap))
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    else:
        del blob[data.draw(st.integers(0, len(blob) - 1)) :]
    with pytest.raises(WireError):
        decode_snapshot(bytes(blob))


def _sealed(meta: bytes, data: bytes = b"") -> bytes:
    ml = len(meta).to_bytes(4, "big")
    crc = zlib.crc32(ml + meta + data)
    return b"\x01S" + crc.to_bytes(4, "big") + ml + meta + data


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x01M" + b"\x00" * 20,
        _sealed(b"\x94\x01\x01\x91\x01"),  # truncated metadata
        _sealed(msgpack.packb([1, 1, [1], [2]]) + b"x"),  # trailing junk in metadata
        _sealed(msgpack.packb([1, 1, [0], []])),  # member id 0
        _sealed(msgpack.packb([1, 1, [1], [1]])),  # voter and learner
        _sealed(msgpack.packb([1, -1, [1], []])),
        _sealed(msgpack.packb([1, 1, [1]])),
        _sealed(msgpack.packb({"index": 1})),
        b"\x01S" + b"\x00" * 4 + b"\xff\xff\xff\xff",  # metadata length beyond the blob
    ],
)
def test_malformed_snapshot_blobs_raise_wire_error(blob: bytes) -> None:
    with pytest.raises(WireError):
        decode_snapshot(blob)


def test_snapshot_size_limit() -> None:
    blob = encode_snapshot(Snapshot(SnapshotMetadata(1, 1, ConfState((1,))), b"x" * 100))
    with pytest.raises(WireError):
        decode_snapshot(blob, max_size=len(blob) - 1)


def test_forwarded_proposals_with_index_zero_round_trip() -> None:
    """A follower forwards proposals before they have a place in the log: term and
    index 0 must cross the wire."""
    from raftkv.raft.types import Entry, Message, MessageType

    m = Message(MessageType.PROP_FORWARD, to=1, sender=2, entries=(Entry(0, 0, data=b"x"),))
    assert decode_messages(encode_messages([m]))[0].entries == m.entries
