"""Backups: `/v1/snapshot`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse

from . import schema as S
from .deps import NodeDep, ReadGuard

SNAPSHOT_CHUNK = 1 << 20

router = APIRouter(tags=["backup"], responses=S.ERRORS)

_SNAPSHOT = {200: {"content": {"application/octet-stream": {}}, "description": "the snapshot"}}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), SNAPSHOT_CHUNK):
        yield data[i : i + SNAPSHOT_CHUNK]


@router.get("/v1/snapshot", response_class=Response, responses=_SNAPSHOT)  # type: ignore[arg-type]
async def snapshot(node: NodeDep, _: None = ReadGuard) -> Response:
    """A point-in-time copy of the state machine (KVStore snapshot format, which
    carries its own CRC32; the SHA-256 header covers the bytes as sent).
    Linearizable by default: the copy includes every write completed before the
    request. `raftkv snapshot restore` turns it into a new one-member cluster."""
    index, data, digest = await node.backup()
    headers = {
        "Content-Length": str(len(data)),
        "Content-Disposition": f'attachment; filename="raftkv-{index}.snapshot"',
        "X-Raftkv-Applied-Index": str(index),
        "X-Raftkv-Sha256": digest,
        "X-Raftkv-Member-Id": str(node.member_id),
        "X-Raftkv-Cluster-Id": node.cfg.cluster_id,
        "Cache-Control": "no-store",
    }
    return StreamingResponse(_chunks(data), 200, headers, media_type="application/octet-stream")
