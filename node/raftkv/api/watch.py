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
from fastapi import APIRouter, Request, WebSocket
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
from .outcome import header

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
"""Keyed by the events tuple's id; each entry holds the tuple, so that while it is
cached no other object can take that id."""
_MAX_LINES = 4096


def _line(node: Node, r: WatchResponse) -> bytes:
    """One NDJSON line. Event lines are cached: with many watchers of one prefix,
    every stream sends the same line for a revision, and encoding it once instead
    of once per watcher is most of the cost of a fan-out."""
    if not r.events or r.canceled or r.created:
        return _encode(node, r)
    term = node.raw.term if node.raw is not None else 0
    # Watchers of one group share the very tuple of shaped events (the hub shapes
    # once per group), so its identity is the key; the entry pins the tuple alive.
    key = (id(node), term, r.watch_id, r.revision, id(r.events))
    hit = _LINES.get(key)
    if hit is not None:
        return hit[1]
    if len(_LINES) >= _MAX_LINES:
        _LINES.clear()
    line = _encode(node, r)
    _LINES[key] = (r.events, line)
    return line


def _encode(node: Node, r: WatchResponse) -> bytes:
    out: dict[str, Any] = {"header": header(node, r.revision), "watch_id": r.watch_id}
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
    gap = node.cfg.watch_batch_interval
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
                await _pause_after_send(gap)
                continue
            wait = quiet_since + heartbeat - loop.time()
            if wait <= 0:
                stream.request_progress()
                quiet_since = loop.time()
                if not stream.pending:
                    yield b"\n"  # behind and catching up: still alive
                continue
            await _wait(signal, wait)
    finally:
        node.remove_watch_waiter(signal)
        stream.close()


async def _wait(signal: asyncio.Event, timeout: float) -> None:
    """Until the hub has news or `timeout` passes (no task per wait, unlike
    `asyncio.wait_for` on Python 3.11: a fan-out waits hundreds of thousands of times
    a second)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await signal.wait()


async def _pause_after_send(gap: float) -> None:
    """After a send, let `gap` seconds of revisions gather before the next one. A
    stream sent every applied revision of a busy prefix costs a wake-up and a write
    per watcher per revision, which is what bounds a fan-out; this caps a stream at
    one send per `gap` and adds at most `gap` of delay, and only to a revision that
    follows the previous send that closely: one after a quiet spell goes at once."""
    if gap > 0:
        await asyncio.sleep(gap)


# -- many watches on one WebSocket -------------------------------------------------


class _BadMessage(ValueError):
    pass


def _filters(raw: object) -> list[Filter]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _BadMessage("filters must be a list of NOPUT / NODELETE")
    out = []
    for f in raw:
        if f in ("NOPUT", 0):
            out.append(Filter.NOPUT)
        elif f in ("NODELETE", 1):
            out.append(Filter.NODELETE)
        else:
            raise _BadMessage(f"unknown filter {f!r}")
    return out


def _apply_request(stream: WatchStream, msg: object) -> None:
    """One client message: etcd's WatchRequest in JSON (create_request, cancel_request
    or progress_request)."""
    if not isinstance(msg, dict) or len(msg) != 1:
        raise _BadMessage("a message is one of create_request, cancel_request, progress_request")
    ((kind, body),) = msg.items()
    if not isinstance(body, dict):
        raise _BadMessage(f"{kind} must be an object")
    try:
        if kind == "create_request":
            start = J.i64(body.get("start_revision"), "start_revision")
            wid = J.i64(body.get("watch_id"), "watch_id")
            if start < 0 or wid < 0:
                raise _BadMessage("start_revision and watch_id must be >= 0")
            key = J.b64(body.get("key"), "key")
            if not key:
                raise _BadMessage("key must not be empty")
            stream.create(
                key,
                J.b64(body.get("range_end"), "range_end"),
                start_revision=start,
                filters=_filters(body.get("filters")),
                prev_kv=J.flag(body.get("prev_kv"), "prev_kv"),
                progress_notify=J.flag(body.get("progress_notify"), "progress_notify"),
                watch_id=wid or None,
            )
        elif kind == "cancel_request":
            stream.cancel(J.i64(body.get("watch_id"), "watch_id"))
        elif kind == "progress_request":
            stream.request_progress()
        else:
            raise _BadMessage(f"unknown request {kind!r}")
    except E.ApiError as exc:
        raise _BadMessage(exc.message) from None


@router.websocket("/v1/watch/ws")
async def watch_ws(ws: WebSocket) -> None:
    """Many watches multiplexed on one WebSocket, as etcd's Watch stream: the client
    sends `{"create_request": {...}}` (base64 `key`/`range_end`, `start_revision`,
    `filters`, `prev_kv`, `progress_notify`, `watch_id`), `{"cancel_request":
    {"watch_id"}}` or `{"progress_request": {}}`; the server sends one JSON object
    per message, in the shape of `GET /v1/watch`'s lines, with each watch's id. A
    malformed message gets `{"error": "invalid_request", "message"}` and the socket
    stays open."""
    node: Node = ws.app.state.node
    await ws.accept()
    if node.raw is None or node.removed or node.stopping:
        await ws.close(code=1013, reason="member is not serving")
        return
    stream = node.watch.new_stream()
    signal = node.add_watch_waiter()

    async def read() -> None:
        while True:
            text = await ws.receive_text()
            try:
                _apply_request(stream, orjson.loads(text))
            except (orjson.JSONDecodeError, _BadMessage, ValueError) as exc:
                await ws.send_text(
                    orjson.dumps({"error": "invalid_request", "message": str(exc)}).decode()
                )
            signal.set()

    async def write() -> None:
        gap = node.cfg.watch_batch_interval
        while not node.stopping and not node.removed:
            signal.clear()
            out = stream.drain(MAX_EVENTS_PER_LINE)
            for r in out:
                await ws.send_text(_line(node, r).decode().rstrip("\n"))
            if out:
                await _pause_after_send(gap)
            else:
                await _wait(signal, DEFAULT_HEARTBEAT)

    tasks = [asyncio.ensure_future(read()), asyncio.ensure_future(write())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        node.remove_watch_waiter(signal)
        stream.close()
        with contextlib.suppress(Exception):
            await ws.close()
