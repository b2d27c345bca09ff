"""The WAL record codec, sans-I/O: bytes in, records out (and back), never a file.

Keeping the framing pure (in the style of h11) lets tests hit every torn/corrupt byte
pattern without a disk, and keeps the WAL's file handling small enough to audit.

Frame layout (little endian), 12-byte header then payload::

    u32 crc | u16 magic | u8 type | u8 flags | u32 payload length | payload

The CRC32 covers everything after itself (magic, type, flags, length, payload: one
contiguous range, so decoding is one crc32 call), and is *seeded with the record's
position* (segment sequence number and byte offset). A record is therefore valid only at
the exact place it was written: bytes that merely look like a record -- a WAL image stored
as a user value, stale blocks exposed after a crash, a misdirected write -- never decode as
one. That property is what makes the resynchronising scan (`scan_intact`) trustworthy when
deciding whether a bad record is a torn tail or corruption in the middle of the log.

`FLAG_GROUP_START` marks the first record of every write group (one write() followed by
one fdatasync). Groups are written strictly one after another and each is synced before
the next begins, so a crash can only tear the *last* group: a bad record followed by an
intact group start was durable once, and is corruption, not a torn write.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum

from raftkv.raft.types import ConfState, Entry, EntryType, HardState, SnapshotMetadata

MAGIC = 0xD57A
MAGIC_BYTES = struct.pack("<H", MAGIC)
_CRC = struct.Struct("<I")
_PREFIX = struct.Struct("<HBBI")  # magic, type, flags, payload length
_HEADER = struct.Struct("<IHBBI")  # crc + prefix
HEADER_SIZE = _HEADER.size
_MAGIC_AT = _CRC.size

MAX_PAYLOAD = 1 << 28
"""Far above any entry the member accepts; a larger length field is garbage, so a torn
header cannot make the decoder wait for (or scan) gigabytes that will never come."""

FLAG_GROUP_START = 0x01
_KNOWN_FLAGS = FLAG_GROUP_START


class RecordType(IntEnum):
    ENTRY = 1
    HARD_STATE = 2
    SNAPSHOT = 3
    """A snapshot marker: the log was compacted or replaced at (index, term)."""


Body = Entry | HardState | SnapshotMetadata

_ENTRY = struct.Struct("<QQB")  # term, index, entry type; data follows
_ENTRY_TYPES = {int(t): t for t in EntryType}
_HARD_STATE = struct.Struct("<QQQ")  # term, vote, commit
_SNAP_META = struct.Struct("<QQII")  # index, term, #voters, #learners; u64 ids follow


class RecordError(Exception):
    """Decoding stopped at `offset` (absolute position in the segment)."""

    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(f"offset {offset}: {reason}")


class TruncatedRecord(RecordError):
    """The bytes end inside a record. At the end of the newest segment that is the
    normal signature of a crash mid-write; anywhere else it is corruption."""


class InvalidRecord(RecordError):
    """The bytes at this position are not a record written here (bad magic, checksum,
    length, type or payload)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record and where it sat, so errors and truncation can point at it."""

    offset: int
    size: int
    flags: int
    body: Body

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def group_start(self) -> bool:
        return bool(self.flags & FLAG_GROUP_START)


def position_seed(segment_seq: int, offset: int) -> int:
    """CRC seed binding a record to its place; multiplication by odd constants is a
    bijection mod 2**32, so two offsets in one segment never share a seed."""
    return ((offset * 0x9E3779B1) ^ (segment_seq * 0x85EBCA6B)) & 0xFFFFFFFF


# --- payloads -------------------------------------------------------------------------


def encode_entry(entry: Entry) -> bytes:
    return _ENTRY.pack(entry.term, entry.index, entry.type) + entry.data


def encode_hard_state(hs: HardState) -> bytes:
    return _HARD_STATE.pack(hs.term, hs.vote, hs.commit)


def encode_snapshot_metadata(meta: SnapshotMetadata) -> bytes:
    cs = meta.conf_state
    ids = (*cs.voters, *cs.learners)
    head = _SNAP_META.pack(meta.index, meta.term, len(cs.voters), len(cs.learners))
    return head + struct.pack(f"<{len(ids)}Q", *ids)


def encode_body(body: Body) -> tuple[RecordType, bytes]:
    if isinstance(body, Entry):
        return RecordType.ENTRY, encode_entry(body)
    if isinstance(body, HardState):
        return RecordType.HARD_STATE, encode_hard_state(body)
    return RecordType.SNAPSHOT, encode_snapshot_metadata(body)


def decode_snapshot_metadata(payload: bytes | bytearray | memoryview) -> SnapshotMetadata:
    """Raises ValueError on malformed bytes (shared with the snapshot file format)."""
    if len(payload) < _SNAP_META.size:
        raise ValueError("snapshot metadata too short")
    index, term, nv, nl = _SNAP_META.unpack_from(payload)
    if len(payload) != _SNAP_META.size + 8 * (nv + nl):
        raise ValueError("snapshot metadata length does not match its member counts")
    ids = struct.unpack_from(f"<{nv + nl}Q", payload, _SNAP_META.size)
    return SnapshotMetadata(index, term, ConfState(voters=ids[:nv], learners=ids[nv:]))


def decode_body(rtype: int, payload: bytes | bytearray | memoryview) -> Body:
    """Raises ValueError on an unknown type or malformed payload."""
    if rtype == RecordType.ENTRY:
        if len(payload) < _ENTRY.size:
            raise ValueError("entry payload too short")
        term, index, etype = _ENTRY.unpack_from(payload)
        if etype not in _ENTRY_TYPES:
            raise ValueError(f"unknown entry type {etype}")
        return Entry(term, index, _ENTRY_TYPES[etype], bytes(payload[_ENTRY.size :]))
    if rtype == RecordType.HARD_STATE:
        if len(payload) != _HARD_STATE.size:
            raise ValueError("hard state payload has the wrong size")
        return HardState(*_HARD_STATE.unpack(payload))
    if rtype == RecordType.SNAPSHOT:
        return decode_snapshot_metadata(payload)
    raise ValueError(f"unknown record type {rtype}")


# --- framing --------------------------------------------------------------------------


def frame(
    rtype: RecordType, payload: bytes, *, segment_seq: int, offset: int, flags: int = 0
) -> bytes:
    prefix = _PREFIX.pack(MAGIC, rtype, flags, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(prefix, position_seed(segment_seq, offset)))
    return _CRC.pack(crc) + prefix + payload


def framed_size(payloads: Sequence[tuple[RecordType, bytes]]) -> int:
    return sum(HEADER_SIZE + len(p) for _, p in payloads)


def frame_group(
    payloads: Sequence[tuple[RecordType, bytes]], *, segment_seq: int, offset: int
) -> bytes:
    """Frame one write group into a single buffer: one write() call, one fdatasync.

    This is the WAL's hot path, hence the inlined framing.
    """
    parts: list[bytes] = []
    append = parts.append
    pack_prefix = _PREFIX.pack
    pack_crc = _CRC.pack
    crc32 = zlib.crc32
    flags = FLAG_GROUP_START
    pos = offset
    for rtype, payload in payloads:
        n = len(payload)
        prefix = pack_prefix(MAGIC, rtype, flags, n)
        append(pack_crc(crc32(payload, crc32(prefix, position_seed(segment_seq, pos)))))
        append(prefix)
        append(payload)
        pos += HEADER_SIZE + n
        flags = 0
    return b"".join(parts)


def decode_at(
    buf: bytes | bytearray | memoryview, pos: int, *, segment_seq: int, base_offset: int = 0
) -> Record:
    """Decode the record starting at `buf[pos]`, which sits at file offset
    `base_offset + pos`. Raises TruncatedRecord or InvalidRecord.

    Replay spends its time here, hence the inlined fast path for entries.
    """
    offset = base_offset + pos
    avail = len(buf) - pos
    if avail < HEADER_SIZE:
        if (
            avail >= _MAGIC_AT + 2
            and bytes(buf[pos + _MAGIC_AT : pos + _MAGIC_AT + 2]) != MAGIC_BYTES
        ):
            raise InvalidRecord(offset, "bad magic")
        raise TruncatedRecord(offset, f"only {avail} bytes of a {HEADER_SIZE}-byte header")
    stored, magic, rtype, flags, length = _HEADER.unpack_from(buf, pos)
    if magic != MAGIC:
        raise InvalidRecord(offset, "bad magic")
    if length > MAX_PAYLOAD:
        raise InvalidRecord(offset, f"implausible payload length {length}")
    end = pos + HEADER_SIZE + length
    if end > len(buf):
        raise TruncatedRecord(offset, f"record of {HEADER_SIZE + length} bytes cut short")
    if zlib.crc32(buf[pos + _MAGIC_AT : end], position_seed(segment_seq, offset)) != stored:
        raise InvalidRecord(offset, "checksum mismatch")
    if flags & ~_KNOWN_FLAGS:
        raise InvalidRecord(offset, f"unknown flags {flags:#x}")
    start = pos + HEADER_SIZE
    body: Body
    if rtype == RecordType.ENTRY and length >= _ENTRY.size:
        term, index, etype = _ENTRY.unpack_from(buf, start)
        kind = _ENTRY_TYPES.get(etype)
        if kind is None:
            raise InvalidRecord(offset, f"malformed payload: unknown entry type {etype}")
        body = Entry(term, index, kind, bytes(buf[start + _ENTRY.size : end]))
    else:
        try:
            body = decode_body(rtype, buf[start:end])
        except ValueError as exc:
            raise InvalidRecord(offset, f"malformed payload: {exc}") from None
    return Record(offset, HEADER_SIZE + length, flags, body)


def scan_intact(
    buf: bytes | bytearray | memoryview, start: int, *, segment_seq: int, base_offset: int = 0
) -> Iterator[Record]:
    """Every intact record at or after `buf[start]`, found by resynchronising on the magic.

    Used only after a decoding failure, to tell a torn tail (nothing durable follows) from
    corruption in the middle (a later write group survived intact).
    """
    data = bytes(buf) if isinstance(buf, memoryview) else buf
    pos = start
    while True:
        found = data.find(MAGIC_BYTES, pos + _MAGIC_AT)
        if found < 0:
            return
        pos = found - _MAGIC_AT
        try:
            rec = decode_at(data, pos, segment_seq=segment_seq, base_offset=base_offset)
        except RecordError:
            pos += 1
            continue
        yield rec
        pos += rec.size


class RecordDecoder:
    """Incremental decoder: `feed()` bytes as they arrive, pull records with
    `next_record()` until it returns None (needs more data). Raises InvalidRecord."""

    def __init__(self, *, segment_seq: int, offset: int = 0) -> None:
        self._seq = segment_seq
        self._buf = bytearray()
        self._pos = 0
        self._base = offset

    @property
    def offset(self) -> int:
        """File offset of the next undecoded byte (the start of the next record)."""
        return self._base + self._pos

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._base += self._pos
            self._pos = 0
        self._buf += data

    def next_record(self) -> Record | None:
        try:
            rec = decode_at(self._buf, self._pos, segment_seq=self._seq, base_offset=self._base)
        except TruncatedRecord:
            return None
        self._pos += rec.size
        return rec

    def check_end(self) -> None:
        """The input is complete: leftover bytes are a truncated record."""
        if self.buffered:
            decode_at(self._buf, self._pos, segment_seq=self._seq, base_offset=self._base)
