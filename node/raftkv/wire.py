"""Binary codec for what members send each other: batches of Raft messages, snapshots.

Sans-I/O and on the hot path (every heartbeat and append goes through it), so:
- positional msgpack arrays, never maps: no field names on the wire or in the decoder;
- one frame per batch: `FRAME_VERSION`, a kind byte, then one msgpack array of
  messages, each `[type, to, sender, term, log_term, index, commit, reject,
  reject_hint, entries, snapshot, context]`, entries `[term, index, type, data]`,
  a snapshot `[index, term, voters, learners, data]` (or nil);
- decoding is total over untrusted bytes: anything malformed raises `WireError` (and
  only that), the unpacker's size limits are tied to the frame length so a forged
  length prefix cannot make it allocate more than the frame itself, and every decoded
  field is checked (types, u64 ranges, enum values) before a `Message` is built, so the
  Raft core never sees a value its own code could not have produced. LOCAL message
  types never cross the network and are refused both ways.

Snapshots can be large, so `encode_snapshot` / `decode_snapshot` give the transport a
self-checking blob to stream in chunks: a header, a CRC32 over everything after it,
the metadata as msgpack, then the raw data (appended, never re-packed, so the data is
copied once on each side).
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Callable, Sequence

import msgpack

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

FRAME_VERSION = 1
_MESSAGES_HEADER = bytes((FRAME_VERSION, ord("M")))
_SNAPSHOT_HEADER = bytes((FRAME_VERSION, ord("S")))
_SNAPSHOT_FIXED = len(_SNAPSHOT_HEADER) + 4 + 4  # header, crc32, metadata length

DEFAULT_MAX_FRAME = 64 << 20
"""Refuse message frames above this; the core caps appends at `max_size_per_msg`
(1 MiB by default) per message, so honest batches stay far below it."""

DEFAULT_MAX_SNAPSHOT = 8 << 30

U64_MAX = (1 << 64) - 1

_NETWORK_TYPES: dict[int, MessageType] = {int(t): t for t in MessageType if t not in LOCAL_MESSAGES}
_ENTRY_TYPES: dict[int, EntryType] = {int(t): t for t in EntryType}

# Packing as seven u64s rejects anything that is not an integer in 0..2**64-1 (the
# packed bytes are thrown away): one C call instead of seven chained comparisons.
_U64x7 = struct.Struct("<7Q")


def _entry_factory() -> Callable[[int, int, EntryType, bytes], Entry]:
    """Entry is a frozen dataclass, whose __init__ goes through object.__setattr__ per
    field; writing the slots directly builds the same object ~40% faster, and entries
    are the bulk of every append. Falls back to the constructor if Entry ever stops
    being a slotted dataclass with exactly these fields (the tests compare both)."""
    names = ("term", "index", "type", "data")
    try:
        if tuple(f.name for f in dataclasses.fields(Entry)) != names:
            return Entry
        setters = [vars(Entry)[n].__set__ for n in names]
    except (KeyError, AttributeError, TypeError):
        return Entry
    if "__slots__" not in vars(Entry):
        return Entry
    set_term, set_index, set_type, set_data = setters
    new = object.__new__

    def make(term: int, index: int, etype: EntryType, data: bytes) -> Entry:
        e: Entry = new(Entry)
        set_term(e, term)
        set_index(e, index)
        set_type(e, etype)
        set_data(e, data)
        return e

    return make


_make_entry = _entry_factory()


BytesLike = bytes | bytearray | memoryview
"""Decoders accept any of these, so a transport can hand over its receive buffer
without copying it first."""


class WireError(ValueError):
    """Bytes from a peer (or for a peer) that are not a valid frame of this version."""

    code = "wire_error"


# -- messages --------------------------------------------------------------------


def encode_messages(msgs: Sequence[Message]) -> bytes:
    out: list[tuple[object, ...]] = []
    append = out.append
    for m in msgs:
        if m.type in LOCAL_MESSAGES:
            raise WireError(f"{m.type.name} is a local message and never crosses the network")
        snap = m.snapshot
        append(
            (
                m.type,
                m.to,
                m.sender,
                m.term,
                m.log_term,
                m.index,
                m.commit,
                m.reject,
                m.reject_hint,
                [(e.term, e.index, e.type, e.data) for e in m.entries],
                None if snap is None else _snapshot_fields(snap),
                m.context,
            )
        )
    try:
        body: bytes = msgpack.packb(out, use_bin_type=True)
    except Exception as exc:  # a field of the wrong type or out of range
        raise WireError(f"cannot encode messages: {exc}") from exc
    return _MESSAGES_HEADER + body


def _snapshot_fields(s: Snapshot) -> tuple[int, int, tuple[int, ...], tuple[int, ...], bytes]:
    md = s.metadata
    return (md.index, md.term, md.conf_state.voters, md.conf_state.learners, s.data)


def decode_messages(data: BytesLike, *, max_size: int = DEFAULT_MAX_FRAME) -> list[Message]:
    n = len(data)
    if n > max_size:
        raise WireError(f"frame of {n} bytes exceeds the {max_size}-byte limit")
    if data[:2] != _MESSAGES_HEADER:
        raise WireError("not a version-1 message frame")
    try:
        # unpackb caps every length at the input size; max_map_len/max_ext_len=0 refuse
        # maps and extension types outright, since a valid frame has neither.
        batch = msgpack.unpackb(
            memoryview(data)[2:], raw=False, use_list=False, max_map_len=0, max_ext_len=0
        )
    except Exception as exc:
        raise WireError(f"undecodable frame: {exc}") from exc
    if type(batch) is not tuple:
        raise WireError("frame body must be an array of messages")
    try:
        return [_decode_message(m) for m in batch]
    except WireError:
        raise
    except Exception as exc:  # defensive: validation below should leave nothing else
        raise WireError(f"invalid message: {exc}") from exc


def _decode_message(m: object) -> Message:
    if type(m) is not tuple or len(m) != 12:
        raise WireError("a message must be a 12-element array")
    (mtype, to, sender, term, log_term, index, commit, reject, hint, ents, snap, ctx) = m
    kind = _NETWORK_TYPES.get(mtype) if type(mtype) is int else None
    if kind is None:
        raise WireError(f"unknown or local message type {mtype!r}")
    # Chained `is` keeps the common case to one expression; bool is excluded because
    # type(True) is bool, not int.
    if not (
        type(to) is type(sender) is type(term) is type(log_term) is int
        and type(index) is type(commit) is type(hint) is int
    ):
        raise WireError("message integer fields must be integers")
    try:
        _U64x7.pack(to, sender, term, log_term, index, commit, hint)
    except struct.error:
        raise WireError("message integer field out of range") from None
    if not to or not sender:
        raise WireError("member id 0 means nobody; it cannot send or receive")
    if type(reject) is not bool or type(ctx) is not bytes or type(ents) is not tuple:
        raise WireError("malformed message fields")
    entries = tuple([_decode_entry(e) for e in ents]) if ents else ()
    if snap is None:
        if kind is MessageType.SNAP:
            raise WireError("SNAP message without a snapshot")
        snapshot = None
    else:
        if kind is not MessageType.SNAP:
            raise WireError(f"{kind.name} message must not carry a snapshot")
        snapshot = _decode_snapshot_fields(snap)
    return Message(
        kind, to, sender, term, log_term, index, entries, commit, snapshot, reject, hint, ctx
    )


def _decode_entry(e: object) -> Entry:
    if type(e) is not tuple or len(e) != 4:
        raise WireError("an entry must be a 4-element array")
    term, index, etype, data = e
    # Index 0 is legal: proposals a follower forwards are not placed in the log yet.
    if not (type(term) is type(index) is int and 0 <= term <= U64_MAX and 0 <= index <= U64_MAX):
        raise WireError("entry term/index out of range")
    kind = _ENTRY_TYPES.get(etype) if type(etype) is int else None
    if kind is None:
        raise WireError(f"unknown entry type {etype!r}")
    if type(data) is not bytes:
        raise WireError("entry data must be bytes")
    return _make_entry(term, index, kind, data)


def _member_ids(ids: object) -> tuple[int, ...]:
    if type(ids) is not tuple:
        raise WireError("member ids must be an array")
    for i in ids:
        if type(i) is not int or not 0 < i <= U64_MAX:
            raise WireError("member id out of range")
    if len(set(ids)) != len(ids):
        raise WireError("duplicate member id")
    return ids


def _decode_snapshot_fields(s: object) -> Snapshot:
    if type(s) is not tuple or len(s) != 5:
        raise WireError("a snapshot must be a 5-element array")
    index, term, voters, learners, data = s
    metadata = _decode_metadata((index, term, voters, learners))
    if type(data) is not bytes:
        raise WireError("snapshot data must be bytes")
    return Snapshot(metadata, data)


def _decode_metadata(md: object) -> SnapshotMetadata:
    if type(md) is not tuple or len(md) != 4:
        raise WireError("snapshot metadata must be a 4-element array")
    index, term, voters, learners = md
    if not (type(index) is type(term) is int and 0 <= index <= U64_MAX and 0 <= term <= U64_MAX):
        raise WireError("snapshot index/term out of range")
    voter_ids = _member_ids(voters)
    learner_ids = _member_ids(learners)
    if set(voter_ids) & set(learner_ids):
        raise WireError("a member cannot be both voter and learner")
    return SnapshotMetadata(index, term, ConfState(voter_ids, learner_ids))


# -- snapshots for streaming -------------------------------------------------------


def encode_snapshot(s: Snapshot) -> bytes:
    """`[1, 'S'] crc32:u32be meta_len:u32be meta(msgpack) data`; the CRC covers
    everything after itself, so a chunk lost, reordered or flipped in transit is
    caught before the state machine restores from it."""
    md = s.metadata
    try:
        meta: bytes = msgpack.packb(
            (md.index, md.term, md.conf_state.voters, md.conf_state.learners),
            use_bin_type=True,
        )
    except Exception as exc:
        raise WireError(f"cannot encode snapshot metadata: {exc}") from exc
    meta_len = len(meta).to_bytes(4, "big")
    crc = zlib.crc32(s.data, zlib.crc32(meta, zlib.crc32(meta_len)))
    return b"".join((_SNAPSHOT_HEADER, crc.to_bytes(4, "big"), meta_len, meta, s.data))


def decode_snapshot(data: BytesLike, *, max_size: int = DEFAULT_MAX_SNAPSHOT) -> Snapshot:
    n = len(data)
    if n > max_size:
        raise WireError(f"snapshot of {n} bytes exceeds the {max_size}-byte limit")
    view = memoryview(data)
    if n < _SNAPSHOT_FIXED or view[:2] != _SNAPSHOT_HEADER:
        raise WireError("not a version-1 snapshot blob")
    if zlib.crc32(view[6:]) != int.from_bytes(view[2:6], "big"):
        raise WireError("snapshot checksum mismatch")
    meta_len = int.from_bytes(view[6:10], "big")
    if meta_len > n - _SNAPSHOT_FIXED:
        raise WireError("snapshot metadata length exceeds the blob")
    meta_end = _SNAPSHOT_FIXED + meta_len
    try:
        md = msgpack.unpackb(
            view[_SNAPSHOT_FIXED:meta_end],
            raw=False,
            use_list=False,
            max_map_len=0,
            max_ext_len=0,
            max_bin_len=0,
            max_str_len=0,
        )
    except Exception as exc:
        raise WireError(f"undecodable snapshot metadata: {exc}") from exc
    return Snapshot(_decode_metadata(md), bytes(view[meta_end:]))
