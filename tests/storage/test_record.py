"""The sans-I/O record codec: every byte pattern a crash or a bad disk can produce."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftkv.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMetadata
from raftkv.storage.record import (
    FLAG_GROUP_START,
    HEADER_SIZE,
    MAX_PAYLOAD,
    Body,
    InvalidRecord,
    RecordDecoder,
    RecordType,
    TruncatedRecord,
    decode_at,
    decode_body,
    encode_body,
    frame,
    frame_group,
    framed_size,
    scan_intact,
)

u64 = st.integers(min_value=0, max_value=2**64 - 1)
entries = st.builds(
    Entry,
    term=u64,
    index=u64,
    type=st.sampled_from(EntryType),
    data=st.binary(max_size=300),
)
hard_states = st.builds(HardState, term=u64, vote=u64, commit=u64)
conf_states = st.builds(
    ConfState,
    voters=st.lists(u64, max_size=5).map(tuple),
    learners=st.lists(u64, max_size=5).map(tuple),
)
metas = st.builds(SnapshotMetadata, index=u64, term=u64, conf_state=conf_states)
bodies = st.one_of(entries, hard_states, metas)


def group(*bodies: Entry | HardState | SnapshotMetadata, seq: int = 1, offset: int = 0) -> bytes:
    return frame_group([encode_body(b) for b in bodies], segment_seq=seq, offset=offset)


@given(st.lists(bodies, min_size=1, max_size=8), st.integers(0, 2**40), st.integers(0, 2**20))
def test_group_round_trip(items: list[Entry], seq: int, offset: int) -> None:
    buf = group(*items, seq=seq, offset=offset)
    assert len(buf) == framed_size([encode_body(b) for b in items])
    pos, decoded = 0, []
    while pos < len(buf):
        rec = decode_at(buf, pos, segment_seq=seq, base_offset=offset)
        assert rec.offset == offset + pos
        decoded.append(rec)
        pos += rec.size
    assert [r.body for r in decoded] == items
    assert [r.group_start for r in decoded] == [True] + [False] * (len(items) - 1)


def test_every_proper_prefix_is_truncated_not_invalid() -> None:
    buf = group(Entry(3, 7, data=b"hello world"))
    for cut in range(len(buf)):
        with pytest.raises(TruncatedRecord) as info:
            decode_at(buf[:cut], 0, segment_seq=1)
        assert info.value.offset == 0


@pytest.mark.parametrize("pos", range(HEADER_SIZE + 17 + 5))
def test_any_flipped_byte_is_detected(pos: int) -> None:
    buf = bytearray(group(Entry(3, 7, data=b"hello")))
    buf[pos] ^= 0x40
    with pytest.raises((InvalidRecord, TruncatedRecord)):
        decode_at(bytes(buf), 0, segment_seq=1)


def test_crc_mismatch_is_reported_at_the_record_offset() -> None:
    buf = bytearray(group(HardState(1, 2, 3), Entry(1, 1, data=b"abc"), offset=100))
    second = HEADER_SIZE + 24
    buf[-1] ^= 0xFF
    decode_at(bytes(buf), 0, segment_seq=1, base_offset=100)
    with pytest.raises(InvalidRecord, match="checksum") as info:
        decode_at(bytes(buf), second, segment_seq=1, base_offset=100)
    assert info.value.offset == 100 + second


def test_record_is_valid_only_where_it_was_written() -> None:
    buf = group(Entry(1, 1, data=b"x"), seq=4, offset=64)
    decode_at(buf, 0, segment_seq=4, base_offset=64)
    with pytest.raises(InvalidRecord):
        decode_at(buf, 0, segment_seq=4, base_offset=65)
    with pytest.raises(InvalidRecord):
        decode_at(buf, 0, segment_seq=5, base_offset=64)


def test_garbage_length_and_flags_and_types_are_invalid() -> None:
    huge = bytearray(frame(RecordType.ENTRY, b"\0" * 17, segment_seq=1, offset=0))
    huge[8:12] = (MAX_PAYLOAD + 1).to_bytes(4, "little")
    with pytest.raises(InvalidRecord, match="length"):
        decode_at(bytes(huge), 0, segment_seq=1)
    with pytest.raises(InvalidRecord, match="flags"):
        decode_at(
            frame(RecordType.ENTRY, b"\0" * 17, segment_seq=1, offset=0, flags=0x80),
            0,
            segment_seq=1,
        )
    with pytest.raises(InvalidRecord, match="unknown record type"):
        decode_at(frame(9, b"", segment_seq=1, offset=0), 0, segment_seq=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match="too short"):
        decode_at(frame(RecordType.ENTRY, b"\0" * 3, segment_seq=1, offset=0), 0, segment_seq=1)
    with pytest.raises(InvalidRecord, match="bad magic"):
        decode_at(b"\x01" * 7, 0, segment_seq=1)
    with pytest.raises(InvalidRecord, match="bad magic"):
        decode_at(b"\x00" * 40, 0, segment_seq=1)


def test_malformed_payloads() -> None:
    with pytest.raises(ValueError):
        decode_body(RecordType.HARD_STATE, b"\0" * 23)
    with pytest.raises(ValueError):
        decode_body(RecordType.SNAPSHOT, b"\0" * 5)
    good = encode_body(SnapshotMetadata(5, 2, ConfState((1, 2), (3,))))[1]
    with pytest.raises(ValueError, match="member counts"):
        decode_body(RecordType.SNAPSHOT, good[:-8])
    with pytest.raises(ValueError):
        decode_body(RecordType.ENTRY, b"\0" * 16 + b"\x07")  # entry type 7 does not exist


def test_scan_intact_resynchronises_past_garbage() -> None:
    first = group(Entry(1, 1, data=b"a"), Entry(1, 2, data=b"b"))
    second = group(Entry(1, 3, data=b"c"), offset=len(first) + 7)
    buf = bytearray(first + b"\xd5\x7a garb" + second)
    buf[HEADER_SIZE + 2] ^= 1  # damage the first record
    found = list(scan_intact(memoryview(bytes(buf)), 1, segment_seq=1))
    assert [r.body.index for r in found] == [2, 3]  # type: ignore[union-attr]
    assert [r.flags & FLAG_GROUP_START for r in found] == [0, FLAG_GROUP_START]


def test_decoder_streams_byte_by_byte() -> None:
    items: list[Entry | HardState] = [
        HardState(1, 1, 0),
        *(Entry(1, i, data=bytes([i]) * i) for i in range(1, 30)),
    ]
    buf = group(*items, seq=2, offset=36)
    dec = RecordDecoder(segment_seq=2, offset=36)
    out: list[Body] = []
    for b in buf:
        dec.feed(bytes([b]))
        while (rec := dec.next_record()) is not None:
            out.append(rec.body)
    assert out == items
    assert dec.offset == 36 + len(buf)
    assert dec.buffered == 0
    dec.check_end()
    dec.feed(buf[:5])
    assert dec.next_record() is None
    with pytest.raises(TruncatedRecord):
        dec.check_end()


def test_decoder_raises_on_corruption() -> None:
    buf = bytearray(group(Entry(1, 1, data=b"abc")))
    buf[-1] ^= 1
    dec = RecordDecoder(segment_seq=1)
    dec.feed(buf)
    with pytest.raises(InvalidRecord):
        dec.next_record()
