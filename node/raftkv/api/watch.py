"""`GET /v1/watch`: one watch as a stream of NDJSON lines over chunked HTTP.

Lines, in order: `{"created": true, ...}`; then event batches `{"header", "events":
[...]}` (whole revisions, in revision order, each event once); progress lines
`{"header", "progress_notify": true}` whose header revision says "every change up to
here has been sent"; and at most one last line `{"canceled": true, ...}` (with
`compact_revision` when the start revision was compacted: resume from a newer one,
or with `cancel_reason` when the watcher fell too far behind). A quiet watch gets a
progress line every `heartbeat` seconds, so a client or proxy can tell a quiet stream
from a dead one. Any member serves watches from its own applied state.

To resume after a disconnect without a gap or a duplicate, watch again from the last
header revision seen + 1.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ..kv.mvcc.kv import Event
from ..kv.mvcc.ranges import ALL_KEYS_END
from ..kv.watch.hub import WatchStream
from ..kv.watch.response import Filter, WatchResponse
from ..server import errors as E
from ..server.node import Node
from . import etcdjson as J
from . import schema as S
from .deps import NodeDep
from .kv import prefix_range

router = APIRouter(tags=["watch"], responses=S.ERRORS)

MAX_EVENTS_PER_LINE = 1000
DEFAULT_HEARTBEAT = 10.0


def _bytes_param(request: Request, name: str) -> bytes | None:
    """`name` as UTF-8 text, or `name_b64` as base64 (for keys that are not text)."""
    text = request.query_params.get(name)
    b64 = request.query_params.get(f"{name}_b64")
    if text is not None and b64 is not None:
        raise E.BadRequest(f"give {name} or {name}_b64, not both", code="invalid_request")
    if b64 is not None:
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise E.BadRequest(f"{name}_b64 is not valid base64", code="invalid_request") from None
    return None if text is None else text.encode()


def _flag(request: Request, name: str) -> bool:
    v = request.query_params.get(name, "false").lower()
    if v not in ("true", "false", "1", "0", ""):
        raise E.BadRequest(f"{name} must be true or false", code="invalid_request")
    return v in ("true", "1", "")


def _number(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise E.BadRequest(f"{name} must be a number", code="invalid_request") from None
    if not low <= v <= high:
        raise E.BadRequest(f"{name} must be between {low} and {high}", code="invalid_request")
    return v


_LINES: dict[tuple[object, ...], tuple[tuple[Event, ...], bytes]] = {}
"""Keyed by the events' ids; each entry holds its events, so that while it is cached
no other object can take one of those ids."""
_MAX_LINES = 4096


def _line(node: Node, r: WatchResponse) -> bytes:
    """One NDJSON line. Event lines are cached: with many watchers of one prefix,
    every stream sends the same line for a revision, and encoding it once instead
    of once per watcher is most of the cost of a fan-out."""
    if not r.events or r.canceled or r.created:
        return _encode(node, r)
    term = node.raw.term if node.raw is not None else 0
    key = (id(node), term, r.watch_id, r.revision, *map(id, r.events))
    hit = _LINES.get(key)
    if hit is not None:
        return hit[1]
    if len(_LINES) >= _MAX_LINES:
        _LINES.clear()
    line = _encode(node, r)
    _LINES[key] = (r.events, line)
    return line


def _encode(node: Node, r: WatchResponse) -> bytes:
    h = {
        "cluster_id": node.cfg.cluster_id,
        "member_id": node.member_id,
        "revision": r.revision,
        "raft_term": node.raw.term if node.raw is not None else 0,
    }
    out: dict[str, Any] = {"header": h, "watch_id": r.watch_id}
    if r.created:
        out["created"] = True
    if r.events:
        out["events"] = [J.event_json(ev) for ev in r.events]
    if r.canceled:
        out["canceled"] = True
        out["compact_revision"] = r.compact_revision
        out["cancel_reason"] = r.cancel_reason
    if r.is_progress_notify:
        out["progress_notify"] = True
    return orjson.dumps(out) + b"\n"


@router.get("/v1/watch")
async def watch(request: Request, node: NodeDep) -> StreamingResponse:
    """Watch `key` (or `key_b64`), or every key starting with it with `prefix=true`,
    or [key, range_end) with `range_end`; from `start_revision` (replaying retained
    history) or from now. Filters `no_put`, `no_delete`; `prev_kv`; `heartbeat`
    seconds between progress lines on a quiet stream (default 10)."""
    key = _bytes_param(request, "key")
    if key is None:
        raise E.BadRequest("key (or key_b64) is required", code="invalid_request")
    range_end = _bytes_param(request, "range_end") or b""
    if _flag(request, "prefix"):
        if range_end:
            raise E.BadRequest("give prefix or range_end, not both", code="invalid_request")
        key, range_end = prefix_range(key)
    elif not key:
        raise E.BadRequest("key must not be empty (use prefix=true for all keys)")
    start = int(_number(request, "start_revision", 0, 0, float(1 << 62)))
    heartbeat = _number(request, "heartbeat", DEFAULT_HEARTBEAT, 0.05, 3600)
    filters = [
        f
        for f, name in ((Filter.NOPUT, "no_put"), (Filter.NODELETE, "no_delete"))
        if _flag(request, name)
    ]
    if node.raw is None or node.removed or node.stopping:
        raise E.Unavailable("member is not serving", code="not_serving")
    stream = node.watch.new_stream()
    stream.create(
        key,
        range_end if range_end != ALL_KEYS_END or key != ALL_KEYS_END else ALL_KEYS_END,
        start_revision=start,
        filters=filters,
        prev_kv=_flag(request, "prev_kv"),
        progress_notify=True,
    )
    return StreamingResponse(
        _lines(node, stream, heartbeat, request),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _lines(
    node: Node, stream: WatchStream, heartbeat: float, request: Request
) -> AsyncIterator[bytes]:
    signal = node.add_watch_waiter()
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    try:
        while not node.stopping and not node.removed:
            signal.clear()
            out = stream.drain(MAX_EVENTS_PER_LINE)
            if out:
                quiet_since = loop.time()
                # One write for everything drained: a watcher that is behind gets
                # many revisions per send instead of a send per revision.
                yield b"".join(_line(node, r) for r in out)
                if out[-1].canceled:
                    return
                continue
            wait = quiet_since + heartbeat - loop.time()
            if wait <= 0:
                stream.request_progress()
                quiet_since = loop.time()
                if not stream.pending:
                    yield b"\n"  # behind and catching up: still alive
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), wait)
    finally:
        node.remove_watch_waiter(signal)
        stream.close()
