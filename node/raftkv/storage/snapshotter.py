"""Snapshot files: written atomically, checksummed, a few generations kept.

File `<index:016x>-<term:016x>.snap`::

    8s magic | u32 crc | u32 metadata length | u64 data length | metadata | data

The CRC32 covers both lengths, the metadata and the data. A snapshot is written to a temp
file, fsynced, renamed into place and the directory fsynced, so a reader sees either the
whole new file or none of it; a crash leaves at most a `.tmp` file, removed on the next
start. Older generations are kept (`keep`) because a snapshot can rot after it was
written: the previous one plus the WAL (which is released only below the *oldest* kept
snapshot, see `release_floor`) rebuilds the same state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from raftkv.raft.types import Snapshot, SnapshotMetadata
from raftkv.storage import fs
from raftkv.storage.errors import SnapshotCorruptError
from raftkv.storage.record import decode_snapshot_metadata, encode_snapshot_metadata

log = logging.getLogger(__name__)

SNAP_SUFFIX = ".snap"
TMP_SUFFIX = ".tmp"
BROKEN_SUFFIX = ".broken"
DEFAULT_KEEP = 3

_MAGIC = b"RKVSNAP1"
_HEADER = struct.Struct("<8sIIQ")
_LENGTHS = struct.Struct("<IQ")

SaveHook = Callable[[float], None]


def snapshot_name(index: int, term: int) -> str:
    return f"{index:016x}-{term:016x}{SNAP_SUFFIX}"


def parse_snapshot_name(name: str) -> tuple[int, int] | None:
    if not name.endswith(SNAP_SUFFIX):
        return None
    parts = name[: -len(SNAP_SUFFIX)].split("-")
    if len(parts) != 2 or any(len(p) != 16 for p in parts):
        return None
    try:
        return int(parts[0], 16), int(parts[1], 16)
    except ValueError:
        return None


def encode_snapshot_file(snapshot: Snapshot) -> bytes:
    meta = encode_snapshot_metadata(snapshot.metadata)
    lengths = _LENGTHS.pack(len(meta), len(snapshot.data))
    crc = zlib.crc32(snapshot.data, zlib.crc32(meta, zlib.crc32(lengths)))
    return _HEADER.pack(_MAGIC, crc, len(meta), len(snapshot.data)) + meta + snapshot.data


def decode_snapshot_file(buf: bytes, path: str = "<bytes>") -> Snapshot:
    """Raises SnapshotCorruptError unless `buf` is exactly one intact snapshot file."""
    if len(buf) < _HEADER.size:
        raise SnapshotCorruptError(path, "shorter than the header")
    magic, crc, meta_len, data_len = _HEADER.unpack_from(buf)
    if magic != _MAGIC:
        raise SnapshotCorruptError(path, "bad magic")
    if len(buf) != _HEADER.size + meta_len + data_len:
        raise SnapshotCorruptError(
            path, f"size {len(buf)} does not match header ({meta_len}+{data_len})"
        )
    view = memoryview(buf)
    meta = view[_HEADER.size : _HEADER.size + meta_len]
    data = view[_HEADER.size + meta_len :]
    if zlib.crc32(data, zlib.crc32(meta, zlib.crc32(_LENGTHS.pack(meta_len, data_len)))) != crc:
        raise SnapshotCorruptError(path, "checksum mismatch")
    try:
        metadata = decode_snapshot_metadata(meta)
    except ValueError as exc:
        raise SnapshotCorruptError(path, f"malformed metadata: {exc}") from None
    return Snapshot(metadata, bytes(data))


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    index: int
    term: int
    path: str


class Snapshotter:
    """Saves and loads the snapshots in one directory. Thread-safe."""

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        *,
        keep: int = DEFAULT_KEEP,
        fsync: bool = True,
        on_save: SaveHook | None = None,
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.dir = os.fspath(dirpath)
        self.keep = keep
        self._fsync = fsync
        self._on_save = on_save
        self._lock = threading.Lock()
        fs.make_dirs(self.dir)
        self._remove_temp_files()

    def _remove_temp_files(self) -> None:
        """A `.tmp` file is a save that crashed before its rename: never a snapshot."""
        for name in os.listdir(self.dir):
            if name.endswith(TMP_SUFFIX):
                log.info("removing leftover snapshot temp file %s", name)
                os.unlink(os.path.join(self.dir, name))

    def files(self) -> list[SnapshotFile]:
        """Snapshot files by name, oldest first; contents unchecked."""
        found = []
        for name in os.listdir(self.dir):
            parsed = parse_snapshot_name(name)
            if parsed is not None:
                found.append(SnapshotFile(parsed[0], parsed[1], os.path.join(self.dir, name)))
        found.sort(key=lambda f: (f.index, f.term))
        return found

    def save(self, snapshot: Snapshot) -> None:
        """Durably store `snapshot`, then drop generations beyond `keep`."""
        if snapshot.empty:
            raise ValueError("refusing to save an empty snapshot (index 0)")
        start = time.perf_counter()
        meta = snapshot.metadata
        final = os.path.join(self.dir, snapshot_name(meta.index, meta.term))
        with self._lock:
            fd, tmp = tempfile.mkstemp(
                prefix=os.path.basename(final) + ".", suffix=TMP_SUFFIX, dir=self.dir
            )
            try:
                try:
                    fs.write_all(fd, encode_snapshot_file(snapshot))
                    if self._fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, final)
            except BaseException:
                _unlink_quietly(tmp)
                raise
            # The new name must be durable before any old generation can go: otherwise
            # a crash could persist the deletions and lose the rename.
            if self._fsync:
                fs.fsync_dir(self.dir)
            if self._prune() and self._fsync:
                fs.fsync_dir(self.dir)
        if self._on_save is not None:
            try:
                self._on_save(time.perf_counter() - start)
            except Exception:
                log.exception("on_save hook failed")

    def _prune(self) -> int:
        stale = self.files()[: -self.keep]
        for old in stale:
            os.unlink(old.path)
        return len(stale)

    def load(self, path: str | os.PathLike[str]) -> Snapshot:
        path = os.fspath(path)
        with open(path, "rb") as f:
            buf = f.read()
        snap = decode_snapshot_file(buf, path)
        named = parse_snapshot_name(os.path.basename(path))
        if named is not None and named != (snap.metadata.index, snap.metadata.term):
            raise SnapshotCorruptError(path, f"contents are for {snap.metadata}, not its name")
        return snap

    def iter_newest_first(self) -> Iterator[Snapshot]:
        """Every intact snapshot, newest first. A corrupt one is logged and renamed to
        `.broken` (kept for forensics, but no longer counted among the `keep` generations
        nor offered again)."""
        for f in reversed(self.files()):
            try:
                snap = self.load(f.path)
            except (SnapshotCorruptError, OSError) as exc:
                log.error("skipping unusable snapshot %s: %s", f.path, exc)
                with self._lock:
                    _rename_quietly(f.path, f.path + BROKEN_SUFFIX)
                continue
            yield snap

    def load_newest(self) -> Snapshot | None:
        return next(self.iter_newest_first(), None)

    def list(self) -> list[SnapshotMetadata]:
        """Metadata of the stored snapshots, oldest first (headers only: cheap, but a
        listed snapshot's data may still turn out corrupt when loaded)."""
        out = []
        for f in self.files():
            try:
                out.append(_read_metadata(f.path))
            except (SnapshotCorruptError, OSError) as exc:
                log.warning("unreadable snapshot header %s: %s", f.path, exc)
        return out

    def release_floor(self) -> int:
        """The index below which no kept snapshot needs the WAL: pass it to
        `WAL.release_to`. Using the oldest kept snapshot, not the newest, is what lets a
        corrupt newest snapshot fall back to an older one plus the WAL."""
        files = self.files()
        return files[0].index if files else 0


def _read_metadata(path: str) -> SnapshotMetadata:
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise SnapshotCorruptError(path, "shorter than the header")
        magic, _crc, meta_len, _data_len = _HEADER.unpack(head)
        if magic != _MAGIC:
            raise SnapshotCorruptError(path, "bad magic")
        meta = f.read(meta_len)
    try:
        return decode_snapshot_metadata(meta)
    except ValueError as exc:
        raise SnapshotCorruptError(path, f"malformed metadata: {exc}") from None


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _rename_quietly(src: str, dst: str) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        log.warning("could not set aside %s: %s", src, exc)
