"""Backups and disaster recovery: `raftkv snapshot save|restore|status`.

A backup file is exactly what `GET /v1/snapshot` returns: the state machine in its
snapshot format (magic, version, CRC32 over the body, then the MVCC store with its
history, the leases and the request-id dedup table at one applied index N; a file
from before MVCC, "RKVS", is still read and converted). It holds no Raft log and no
membership, so it can seed a cluster of any shape.

`restore` writes the data dir a member would have written itself after installing a
Raft snapshot, for a NEW one-member cluster:

- `snap/`: a Raft snapshot at index N, term 1, whose ConfState is the single new voter
  and whose data wraps the KV bytes with a membership registry naming only that member
  (`server.state_codec.encode_state`, the same wrapping the member's own snapshots use);
- `wal/`: the snapshot marker and the hard state (term 1, no vote, commit N);
- `member.json`: a fresh random member id and the cluster id of the NEW cluster token,
  written last, so that an interrupted restore leaves a dir the member refuses to start
  ("holds Raft state but no member.json") rather than one it would bootstrap over.

Keys keep their MVCC revisions (the store revision is not a Raft index), and the new
log continues at N+1. The new cluster id keeps the restored cluster and any survivor of the old one
apart: peers check it on every connection and refuse the other cluster's traffic.

Backups in an S3-compatible object store (`s3://bucket/key`) are `raftkv.s3`: the same
bytes, checked by the same `verify`, with their SHA-256 stored beside them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from .kv.machine import SnapshotError, StateMachine
from .raft import NONE, ConfState, HardState, Snapshot, SnapshotMetadata
from .server.config import cluster_id_for
from .server.membership import MemberInfo, Registry, validate_url
from .server.meta import META_FILE, MemberMeta
from .server.state_codec import encode_state
from .storage import open_storage
from .storage.fs import fsync_dir, make_dirs
from .storage.recovery import SNAP_DIR, WAL_DIR

RESTORE_TERM = 1
MAX_MEMBER_ID = 1 << 32


class BackupError(Exception):
    """A backup file that cannot be used, or a restore target that must not be used."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    applied_index: int
    keys: int
    size: int


@dataclass(frozen=True, slots=True)
class RestoreResult:
    data_dir: Path
    member_id: int
    name: str
    peer_url: str
    cluster_token: str
    cluster_id: str
    applied_index: int
    keys: int


def verify(data: bytes, source: str = "snapshot") -> SnapshotInfo:
    """Decode the whole snapshot (CRC, structure, ordering, revisions <= applied index):
    only bytes a member could restore from pass."""
    try:
        kv = StateMachine.from_snapshot(data)
    except SnapshotError as exc:
        raise BackupError(f"{source} is not a valid raftkv snapshot: {exc}") from None
    return SnapshotInfo(kv.applied_index, len(kv), len(data))


def read_file(path: Path) -> tuple[bytes, SnapshotInfo]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    return data, verify(data, str(path))


def write_file(path: Path, data: bytes) -> None:
    """Atomically: FILE.tmp, fsync, rename over FILE, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise BackupError(f"cannot write {path}: {exc.strerror or exc}") from None


def new_cluster_token() -> str:
    return "restored-" + secrets.token_hex(8)


def restore(
    snapshot_file: Path,
    data_dir: Path,
    *,
    name: str,
    peer_url: str,
    cluster_token: str,
    member_id: int = 0,
) -> RestoreResult:
    data, info = read_file(snapshot_file)
    return restore_data(
        data,
        info,
        str(snapshot_file),
        data_dir,
        name=name,
        peer_url=peer_url,
        cluster_token=cluster_token,
        member_id=member_id,
    )


def restore_data(
    data: bytes,
    info: SnapshotInfo,
    source: str,
    data_dir: Path,
    *,
    name: str,
    peer_url: str,
    cluster_token: str,
    member_id: int = 0,
) -> RestoreResult:
    """`restore` from snapshot bytes already checked by `verify` (`info` is its answer),
    e.g. downloaded from an object store (`raftkv.s3`); `source` names them in errors."""
    if info.applied_index < 1:
        raise BackupError(f"{source} is at applied index 0: it holds no cluster state")
    if not name:
        raise BackupError("the member name must not be empty")
    if not cluster_token:
        raise BackupError("the cluster token must not be empty")
    try:
        url = validate_url(peer_url)
    except ValueError as exc:
        raise BackupError(str(exc)) from None
    if data_dir.exists():
        if not data_dir.is_dir():
            raise BackupError(f"{data_dir} exists and is not a directory")
        if any(data_dir.iterdir()):
            raise BackupError(f"{data_dir} is not empty; restore only into a new or empty dir")
    mid = member_id or secrets.randbelow(MAX_MEMBER_ID - 1) + 1
    registry = Registry({mid: MemberInfo(mid, name, (url,), ())}, set())
    snap = Snapshot(
        SnapshotMetadata(
            index=info.applied_index, term=RESTORE_TERM, conf_state=ConfState(voters=(mid,))
        ),
        encode_state(data, registry),
    )
    created = not data_dir.exists()
    try:
        make_dirs(data_dir)
        storage = open_storage(data_dir)
        try:
            storage.save_snapshot(snap)
            storage.wal.save(HardState(term=RESTORE_TERM, vote=NONE, commit=info.applied_index), [])
        finally:
            storage.close()
        cluster_id = cluster_id_for(cluster_token)
        MemberMeta(mid, name, cluster_id).save(data_dir)
    except BaseException:
        # Leave nothing half-made behind: a retry must find the dir as it was.
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            for sub in (WAL_DIR, SNAP_DIR):
                shutil.rmtree(data_dir / sub, ignore_errors=True)
            with contextlib.suppress(OSError):
                (data_dir / META_FILE).unlink()
        raise
    return RestoreResult(
        data_dir, mid, name, url, cluster_token, cluster_id, info.applied_index, info.keys
    )
