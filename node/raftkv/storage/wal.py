"""The write-ahead log: segment files, torn-tail repair and group commit.

Layout: `<dir>/<seq:016x>.wal` segments with consecutive sequence numbers, plus a `LOCK`
file held with flock so that two handles can never interleave records. Every segment
begins with a copy of the hard state as of its creation, so releasing old segments never
loses the current term and vote.

Durability contract: `wait(ticket)` (and `save()`, which is `submit` + `wait`) returns
only after the records are written *and* fdatasync'ed. Callers that arrive while a sync is
running queue up behind it; whoever finds the log idle next becomes the flusher and writes
everything queued with one write() and one fdatasync (leader/follower group commit, no
background thread to start, stop or leak). Records reach the file in `submit` order, which
is what makes concurrent callers safe for Raft's overwrite semantics.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from raftkv.raft.types import Entry, HardState, SnapshotMetadata
from raftkv.storage import fs
from raftkv.storage.errors import (
    WalClosedError,
    WalCorruptError,
    WalFailedError,
    WalLockedError,
)
from raftkv.storage.record import (
    HEADER_SIZE,
    RecordError,
    RecordType,
    decode_at,
    encode_entry,
    encode_hard_state,
    encode_snapshot_metadata,
    frame_group,
    framed_size,
    scan_intact,
)
from raftkv.storage.replay import LogGapError, LogReplayer, Replay

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_SIZE = 64 * 2**20
SEGMENT_SUFFIX = ".wal"
LOCK_NAME = "LOCK"

FsyncHook = Callable[[float], None]

_HEADER_RECORD_SIZE = HEADER_SIZE + len(encode_hard_state(HardState()))
"""Every segment starts with exactly one hard-state record; a segment holding only that
is never rotated away from, however small `segment_size` is."""


def segment_name(seq: int) -> str:
    return f"{seq:016x}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    stem, suffix = name[:-4], name[-4:]
    if suffix != SEGMENT_SUFFIX or len(stem) != 16:
        return None
    try:
        return int(stem, 16)
    except ValueError:
        return None


@dataclass(slots=True)
class Segment:
    seq: int
    path: str
    max_index: int = 0
    """Highest entry index ever written into this segment (0: none), overwritten or not."""


@dataclass(slots=True)
class _Batch:
    payloads: list[tuple[RecordType, bytes]] = field(default_factory=list)
    hard_state: HardState | None = None
    max_index: int = 0
    upto: int = 0


class WAL:
    """Append-only, segmented, checksummed log of entries, hard states and snapshot
    markers. Use `WAL.open()`; all public methods are thread-safe."""

    def __init__(
        self,
        dirpath: str,
        *,
        lock_fd: int,
        segments: list[Segment],
        fd: int,
        offset: int,
        hard_state: HardState,
        segment_size: int,
        fsync: bool,
        on_fsync: FsyncHook | None,
    ) -> None:
        self.dir = dirpath
        self._lock_fd = lock_fd
        self._segments = segments
        self._fd = fd
        self._offset = offset
        self._hard_state = hard_state
        self._segment_size = segment_size
        self._fsync = fsync
        self._on_fsync = on_fsync

        self._cond = threading.Condition(threading.Lock())
        self._pending = _Batch()
        self._queued = 0
        self._synced = 0
        self._busy = False
        """Token for whoever does file I/O (flusher, release_to, close); guarded by _cond."""
        self._failure: BaseException | None = None
        self._closed = False

        self.fsync_count = 0
        """fdatasync calls made by this handle (tests check group commit with it)."""
        self.group_count = 0
        """Write groups flushed: one write() each."""

    # --- opening and recovery -----------------------------------------------------------

    @classmethod
    def open(
        cls,
        dirpath: str | os.PathLike[str],
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        fsync: bool = True,
        on_fsync: FsyncHook | None = None,
    ) -> tuple[WAL, Replay]:
        """Open (creating if needed) the WAL in `dirpath` and replay it.

        A damaged record is truncated as a torn tail only if it lies in the newest segment
        and no intact write group starts after it -- i.e. it belongs to the one write a
        crash can interrupt. Anything else raises WalCorruptError: dropping it could drop
        committed entries.

        The one case this cannot tell apart (like etcd's WAL) is bit rot inside the last
        durable group *and* a crash that destroyed the start of the group after it: both
        look like a torn last write, and the rotten group is truncated. That assumes
        `fsync=True`; with `fsync=False` (tests only) any group may be torn by a crash.
        """
        if segment_size <= 0:
            raise ValueError("segment_size must be positive")
        path = os.fspath(dirpath)
        fs.make_dirs(path)
        lock_fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise WalLockedError(f"WAL directory {path} is in use by another handle") from None
        try:
            return cls._recover(path, lock_fd, segment_size, fsync, on_fsync)
        except BaseException:
            os.close(lock_fd)
            raise

    @classmethod
    def _recover(
        cls,
        path: str,
        lock_fd: int,
        segment_size: int,
        fsync: bool,
        on_fsync: FsyncHook | None,
    ) -> tuple[WAL, Replay]:
        seqs = sorted(s for s in map(parse_segment_name, os.listdir(path)) if s is not None)
        for prev, seq in itertools.pairwise(seqs):
            if seq != prev + 1:
                raise WalCorruptError(
                    os.path.join(path, segment_name(seq)), 0, f"segment {prev + 1} is missing"
                )
        replayer = LogReplayer()
        segments: list[Segment] = []
        tail_end = 0
        for i, seq in enumerate(seqs):
            seg = Segment(seq, os.path.join(path, segment_name(seq)))
            tail_end = _replay_segment(seg, replayer, newest=i == len(seqs) - 1)
            segments.append(seg)
        replay = replayer.replay

        created = not segments
        if created:
            segments.append(Segment(1, os.path.join(path, segment_name(1))))
        active = segments[-1]
        flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if created else 0)
        fd = os.open(active.path, flags, 0o644)
        wal = cls(
            path,
            lock_fd=lock_fd,
            segments=segments,
            fd=fd,
            offset=0,
            hard_state=replay.hard_state,
            segment_size=segment_size,
            fsync=fsync,
            on_fsync=on_fsync,
        )
        try:
            if created and fsync:
                fs.fsync_dir(path)
            size = os.fstat(fd).st_size
            if tail_end < size:
                log.warning(
                    "WAL %s: torn tail, truncating %d bytes at offset %d",
                    active.path,
                    size - tail_end,
                    tail_end,
                )
                os.ftruncate(fd, tail_end)
                wal._sync(fd)
            os.lseek(fd, tail_end, os.SEEK_SET)
            wal._offset = tail_end
            if tail_end == 0:
                # An empty newest segment must still start with the hard state, or
                # releasing its predecessors would forget term and vote.
                wal._write_header(fd, active.seq)
        except BaseException:
            os.close(fd)
            raise
        return wal, replay

    # --- appending ----------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Append entries, then the hard state; durable when this returns.

        Entries go first so that a torn write can lose a hard state but never leave one
        whose commit index points past the entries that survived.
        """
        self.wait(self.submit(hard_state, entries))

    def submit(self, hard_state: HardState | None, entries: Sequence[Entry]) -> int:
        """Queue records without waiting; returns a ticket for `wait()`.

        Lets a caller fix the order of its records (e.g. under its own lock) and wait for
        durability outside it, so that ordered writers still share fdatasyncs.
        """
        payloads = [(RecordType.ENTRY, encode_entry(e)) for e in entries]
        if hard_state is not None:
            payloads.append((RecordType.HARD_STATE, encode_hard_state(hard_state)))
        max_index = max((e.index for e in entries), default=0)
        return self._submit(payloads, hard_state, max_index)

    def save_snapshot_marker(self, meta: SnapshotMetadata) -> None:
        """Record that the log was compacted or replaced at (meta.index, meta.term);
        durable when this returns. Write it after the snapshot file itself is saved."""
        payload = encode_snapshot_metadata(meta)
        self.wait(self._submit([(RecordType.SNAPSHOT, payload)], None, 0))

    def _submit(
        self, payloads: list[tuple[RecordType, bytes]], hs: HardState | None, max_index: int
    ) -> int:
        with self._cond:
            self._check_open()
            if not payloads:
                return self._queued
            pending = self._pending
            pending.payloads.extend(payloads)
            if hs is not None:
                pending.hard_state = hs
            pending.max_index = max(pending.max_index, max_index)
            self._queued += 1
            pending.upto = self._queued
            return self._queued

    def wait(self, ticket: int) -> None:
        """Block until every record submitted up to `ticket` is durable."""
        while True:
            with self._cond:
                if ticket > self._queued:
                    raise ValueError(f"ticket {ticket} was never issued")
                while self._synced < ticket:
                    self._check_open()
                    if not self._busy:
                        break
                    self._cond.wait()
                else:
                    return
                batch, self._pending = self._pending, _Batch()
                self._busy = True
            self._flush(batch)

    def _flush(self, batch: _Batch) -> None:
        try:
            if batch.payloads:
                self._write_group(batch.payloads, batch.max_index)
        except BaseException as exc:
            with self._cond:
                self._failure = exc
                self._busy = False
                self._cond.notify_all()
            raise WalFailedError(f"WAL {self.dir}: write failed: {exc!r}") from exc
        with self._cond:
            self._synced = max(self._synced, batch.upto)
            if batch.hard_state is not None:
                self._hard_state = batch.hard_state
            self._busy = False
            self._cond.notify_all()

    def _write_group(self, payloads: list[tuple[RecordType, bytes]], max_index: int) -> None:
        size = framed_size(payloads)
        active = self._segments[-1]
        if self._offset + size > self._segment_size and self._offset > _HEADER_RECORD_SIZE:
            self._rotate()
            active = self._segments[-1]
        buf = frame_group(payloads, segment_seq=active.seq, offset=self._offset)
        fs.write_all(self._fd, buf)
        self._offset += len(buf)
        self._sync(self._fd)
        self.group_count += 1
        active.max_index = max(active.max_index, max_index)

    def _rotate(self) -> None:
        """Start a new segment. The old one is already synced (every group is), so a
        crash here leaves at worst an empty or torn newest segment, which open repairs."""
        seq = self._segments[-1].seq + 1
        seg = Segment(seq, os.path.join(self.dir, segment_name(seq)))
        fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            self._write_header(fd, seq)
            if self._fsync:
                fs.fsync_dir(self.dir)
        except BaseException:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd = fd
        self._segments.append(seg)

    def _write_header(self, fd: int, seq: int) -> None:
        buf = frame_group(
            [(RecordType.HARD_STATE, encode_hard_state(self._hard_state))],
            segment_seq=seq,
            offset=0,
        )
        fs.write_all(fd, buf)
        self._sync(fd)
        self._offset = len(buf)

    def _sync(self, fd: int) -> None:
        if not self._fsync:
            return
        start = time.perf_counter()
        os.fdatasync(fd)
        elapsed = time.perf_counter() - start
        self.fsync_count += 1
        if self._on_fsync is not None:
            try:
                self._on_fsync(elapsed)
            except Exception:
                log.exception("on_fsync hook failed")

    # --- housekeeping -------------------------------------------------------------------

    def release_to(self, index: int) -> None:
        """Delete the oldest segments whose entries are all below `index`.

        Only a prefix of segments goes, and never the active one: a later segment may
        overwrite entries of an earlier one, and replaying it without its predecessors is
        only equivalent for indexes >= `index` when nothing after it is missing. Pass the
        *oldest retained* snapshot's index (`Snapshotter.release_floor()`), not the
        newest: then every retained snapshot, including the fallback when the newest is
        corrupt, still finds every entry after it in the WAL.
        """
        with self._cond:
            while True:
                self._check_open()
                if not self._busy:
                    break
                self._cond.wait()
            self._busy = True
        try:
            removed = 0
            while len(self._segments) > 1 and self._segments[0].max_index < index:
                seg = self._segments.pop(0)
                os.unlink(seg.path)
                removed += 1
            if removed and self._fsync:
                fs.fsync_dir(self.dir)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    @property
    def segments(self) -> list[Segment]:
        with self._cond:
            return [Segment(s.seq, s.path, s.max_index) for s in self._segments]

    def close(self) -> None:
        """Flush whatever was submitted, then release the files and the directory lock."""
        with self._cond:
            if self._closed:
                return
            ticket = self._queued
        try:
            self.wait(ticket)
        except WalFailedError:
            pass  # already reported to the submitters; closing must still free the fds
        except WalClosedError:
            return
        with self._cond:
            while self._busy:
                self._cond.wait()
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        os.close(self._fd)
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    def __enter__(self) -> WAL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise WalFailedError(
                f"WAL {self.dir} failed earlier: {self._failure!r}"
            ) from self._failure
        if self._closed:
            raise WalClosedError(f"WAL {self.dir} is closed")


def _replay_segment(seg: Segment, replayer: LogReplayer, *, newest: bool) -> int:
    """Feed one segment's records to `replayer`; return the offset where valid data ends
    (the file size unless the newest segment has a torn tail)."""
    with open(seg.path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        try:
            rec = decode_at(data, pos, segment_seq=seg.seq)
        except RecordError as err:
            if not newest:
                raise WalCorruptError(seg.path, err.offset, err.reason) from None
            later = next(
                (r for r in scan_intact(data, pos + 1, segment_seq=seg.seq) if r.group_start), None
            )
            if later is not None:
                raise WalCorruptError(
                    seg.path,
                    err.offset,
                    f"{err.reason}; an intact later write group starts at offset {later.offset}",
                ) from None
            return pos
        body = rec.body
        if isinstance(body, Entry):
            try:
                replayer.entry(body)
            except LogGapError as exc:
                raise WalCorruptError(seg.path, rec.offset, str(exc)) from None
            seg.max_index = max(seg.max_index, body.index)
        elif isinstance(body, HardState):
            replayer.hard_state(body)
        else:
            replayer.snapshot(body)
        pos = rec.end
    return pos
