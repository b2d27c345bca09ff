"""`Client.watch()` and `AsyncClient.watch()`: a watch on a key or a range as an
iterator of events that survives the loss of the member serving it.

The member streams NDJSON lines (`GET /v1/watch`, see `raftkv.api.watch`): `created`,
event batches (whole revisions, in order, each event once), progress lines whose header
revision says "everything up to here was sent", and at most one `canceled` line.

Resuming without a gap or a duplicate rests on one number, `WatchState.next_revision`:
the lowest revision not yet seen. Every event batch and every progress line moves it
past its header revision; the `created` line of a watch "from now" sets it to the
revision the watch started after. When the stream breaks (the member died, restarts, is
unreachable, or cancelled the watch for being too slow), the watch is made again, on
the next member, from `next_revision`: the member replays history from there, or waits
for it if it is behind the member seen before. If that revision has been compacted the
member cancels the watch with the compact revision, and the iterator raises
`Compacted`: the events in between are gone and only the caller knows how to recover
(re-read, then watch from the read's revision + 1).

A quiet stream carries a progress line every `heartbeat` seconds; a stream silent for
three of them is taken as dead (a member that stopped without closing its sockets) and
is replaced like a broken one.

`WatchState` decides (no I/O); `Watch` (blocking) and `AsyncWatch` drive it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Self

import httpx
from pydantic import ValidationError

from . import client_ops as ops
from .api import schema
from .client import (
    BadResponse,
    Compacted,
    RaftKVError,
    Unavailable,
    _Call,
    _error_from_response,
    _Retry,
)

if TYPE_CHECKING:
    from .client import AsyncClient, Client

WATCH_PATH = "/v1/watch"
COMPACTED_CODE = "compacted"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: Literal["PUT", "DELETE"]
    kv: ops.KV
    """For a DELETE: the key, at the delete's revision (no value)."""
    prev_kv: ops.KV | None = None
    """The key before this event, when the watch asked for `prev_kv`."""

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @property
    def key(self) -> bytes:
        return self.kv.key


class WatchCanceled(RaftKVError):
    """The member refused the watch itself (e.g. an empty range): retrying cannot help."""


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """What to watch: [key, range_end) (etcd's conventions), from `start_revision`
    (0: from now), with the filters."""

    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    prev_kv: bool = False
    no_put: bool = False
    no_delete: bool = False

    @staticmethod
    def of(
        key: ops.Key,
        range_end: ops.Key | None,
        prefix: bool,
        start_revision: int,
        prev_kv: bool,
        no_put: bool,
        no_delete: bool,
    ) -> WatchSpec:
        k, end = ops.key_range(key, range_end, prefix=prefix)
        if isinstance(start_revision, bool) or not isinstance(start_revision, int):
            raise TypeError("start_revision must be an int")
        if start_revision < 0:
            raise ValueError("start_revision must be >= 0 (0: from now)")
        return WatchSpec(k, end, start_revision, prev_kv, no_put, no_delete)


class _Reconnect(Exception):
    """The stream ended without an error for the caller: watch again, elsewhere."""


class WatchState:
    """The resume point and the meaning of each line; no I/O."""

    def __init__(self, spec: WatchSpec) -> None:
        self.spec = spec
        self.next_revision = spec.start_revision
        """The lowest revision not yet seen (0 until a watch "from now" is created)."""
        self.reconnects = 0
        self.created = False
        """This stream's `created` line arrived."""

    @property
    def last_revision(self) -> int:
        """Every change up to this revision has been delivered (0: none yet)."""
        return max(self.next_revision - 1, 0)

    def params(self, heartbeat: float) -> dict[str, str]:
        s = self.spec
        p = {"key_b64": ops._b64(s.key), "heartbeat": f"{heartbeat:g}"}
        if s.range_end:
            p["range_end_b64"] = ops._b64(s.range_end)
        if self.next_revision:
            p["start_revision"] = str(self.next_revision)
        for name in ("prev_kv", "no_put", "no_delete"):
            if getattr(s, name):
                p[name] = "true"
        return p

    def new_stream(self) -> None:
        self.created = False

    def on_line(self, line: str | bytes) -> list[WatchEvent]:
        """The events a line delivers (new ones only, in order). Raises `Compacted`
        or `WatchCanceled` for the caller, `_Reconnect` when the member ended the
        watch for a reason a new watch from `next_revision` overcomes."""
        if not line.strip():
            return []  # keep-alive
        try:
            msg = schema.WatchLine.model_validate_json(line)
        except ValidationError as exc:
            raise BadResponse("bad_response", f"malformed watch line: {exc}", 200) from exc
        if msg.canceled:
            if msg.compact_revision:
                raise Compacted(
                    COMPACTED_CODE,
                    f"cannot watch from revision {self.next_revision}: history before "
                    f"{msg.compact_revision} is compacted",
                    410,
                    msg.compact_revision,
                )
            if msg.created or not self.created:
                raise WatchCanceled("watch_canceled", msg.cancel_reason or "refused", 400)
            raise _Reconnect(msg.cancel_reason or "canceled")
        rev = msg.header.revision if msg.header is not None else 0
        if msg.created:
            self.created = True
            if self.next_revision == 0:
                self.next_revision = rev + 1
            return []
        events: list[WatchEvent] = []
        for i, ev in enumerate(msg.events):
            kv = ops.kv_of(ev.kv, f"events.{i}.kv")
            if kv.mod_revision < self.next_revision:
                continue  # seen before the reconnect
            if ev.type not in ("PUT", "DELETE"):
                raise BadResponse("bad_response", f"events.{i}.type is {ev.type!r}", 200)
            prev = None if ev.prev_kv is None else ops.kv_of(ev.prev_kv, f"events.{i}.prev_kv")
            events.append(WatchEvent(ev.type, kv, prev))  # type: ignore[arg-type]
        if events:
            rev = max(rev, events[-1].revision)
        if self.created and rev + 1 > self.next_revision:
            self.next_revision = rev + 1
        return events


class _Dialer:
    """Which member next, and when to give up: the member after the one that failed,
    a pause after each full round (the client's backoff, doubling), and `Unavailable`
    once `retry_timeout` passed without a working stream (None: never)."""

    def __init__(self, n: int, start: int, backoff: float, cap: float, limit: float | None) -> None:
        self.n = n
        self.ep = start % n
        self._tried = 0
        self._rounds = 0
        self._backoff = backoff
        self._cap = cap
        self._limit = limit
        self._failing_since: float | None = None

    def failed(self, now: float, why: str) -> float:
        """Moves on; the pause before the next attempt. Raises when out of time."""
        if self._failing_since is None:
            self._failing_since = now
        if self._limit is not None and now - self._failing_since > self._limit:
            raise Unavailable("unavailable", f"no member serves the watch: {why}", 0, None)
        self.ep = (self.ep + 1) % self.n
        self._tried += 1
        if self._tried % self.n:
            return 0.0
        self._rounds += 1
        return float(min(self._backoff * (1 << min(self._rounds - 1, 16)), self._cap))

    def connected(self) -> None:
        self._failing_since = None
        self._tried = 0
        self._rounds = 0


def _timeout(base: httpx.Timeout, heartbeat: float) -> httpx.Timeout:
    return httpx.Timeout(
        connect=base.connect, read=3 * heartbeat + 2, write=base.write, pool=base.pool
    )


_WATCH_CALL = _Call("GET", WATCH_PATH, _Retry.READ)


def _refusal(resp: httpx.Response) -> RaftKVError | None:
    """The error of a refused watch request: None when another member may serve it
    (5xx, 410 member removed)."""
    err = _error_from_response(resp, _WATCH_CALL)
    if resp.status_code >= 500 or (resp.status_code == 410 and not isinstance(err, Compacted)):
        return None
    return err


class Watch:
    """Blocking watch: iterate for `WatchEvent`s; `close()` (or the context manager)
    ends it. Made by `Client.watch()`, which returns once the watch is created."""

    def __init__(
        self,
        client: Client,
        spec: WatchSpec,
        *,
        heartbeat: float = 2.0,
        retry_timeout: float | None = None,
    ) -> None:
        if not 0.05 <= heartbeat <= 3600:
            raise ValueError("heartbeat must be between 0.05 and 3600 seconds")
        self._client = client
        self.state = WatchState(spec)
        self._heartbeat = heartbeat
        self._dialer = _Dialer(
            len(client.endpoints),
            client._current,
            client._backoff,
            client._max_backoff,
            retry_timeout,
        )
        self._timeout = _timeout(client._timeout, heartbeat)
        self._resp: httpx.Response | None = None
        self._lines: Iterator[str] | None = None
        self._pending: deque[WatchEvent] = deque()
        self._closed = False
        self._connect()

    @property
    def last_revision(self) -> int:
        """Every change up to here has been delivered (progress lines count)."""
        return self.state.last_revision

    @property
    def reconnects(self) -> int:
        return self.state.reconnects

    @property
    def endpoint(self) -> str:
        """The member serving the watch now."""
        return self._client.endpoints[self._dialer.ep]

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
        self._resp = None
        self._lines = None

    def _connect(self) -> None:
        """Opens a stream and reads up to its `created` line."""
        while not self._closed:
            ep = self._client.endpoints[self._dialer.ep]
            why = ""
            try:
                req = self._client._http.build_request(
                    "GET",
                    ep + WATCH_PATH,
                    params=self.state.params(self._heartbeat),
                    timeout=self._timeout,
                )
                resp = self._client._http.send(req, stream=True)
                if resp.status_code != 200:
                    resp.read()
                    resp.close()
                    err = _refusal(resp)
                    if err is not None:
                        raise err
                    why = f"{ep}: HTTP {resp.status_code}"
                else:
                    self._resp = resp
                    self._lines = resp.iter_lines()
                    self.state.new_stream()
                    while not self.state.created:
                        self._pending.extend(self.state.on_line(next(self._lines)))
                    self._dialer.connected()
                    return
            except (httpx.TransportError, StopIteration, _Reconnect) as exc:
                why = f"{ep}: {type(exc).__name__}: {exc}"
                self._drop()
            pause = self._dialer.failed(time.monotonic(), why)
            if pause:
                time.sleep(pause)

    def _read(self) -> None:
        """One line (or a reconnect when the stream broke)."""
        assert self._lines is not None
        try:
            self._pending.extend(self.state.on_line(next(self._lines)))
            return
        except (httpx.TransportError, StopIteration, _Reconnect) as exc:
            if self._closed:
                return
            why = f"{type(exc).__name__}: {exc}"
        self._drop()
        self.state.reconnects += 1
        pause = self._dialer.failed(time.monotonic(), why)
        if pause:
            time.sleep(pause)
        self._connect()

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event; None if none came within `timeout` (checked between lines,
        so it may take up to a heartbeat longer) or once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._pending:
            if self._closed or (deadline is not None and time.monotonic() >= deadline):
                return None
            try:
                self._read()
            except BaseException:
                self.close()
                raise
        return self._pending.popleft()

    def __iter__(self) -> Iterator[WatchEvent]:
        return self

    def __next__(self) -> WatchEvent:
        ev = self.get()
        if ev is None:
            raise StopIteration
        return ev

    def close(self) -> None:
        self._closed = True
        self._drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncWatch:
    """The asyncio twin of `Watch`: `async with client.watch(...) as w` connects,
    then `async for ev in w`; or `await w.start()` and `await w.aclose()`."""

    def __init__(
        self,
        client: AsyncClient,
        spec: WatchSpec,
        *,
        heartbeat: float = 2.0,
        retry_timeout: float | None = None,
    ) -> None:
        if not 0.05 <= heartbeat <= 3600:
            raise ValueError("heartbeat must be between 0.05 and 3600 seconds")
        self._client = client
        self.state = WatchState(spec)
        self._heartbeat = heartbeat
        self._dialer = _Dialer(
            len(client.endpoints),
            client._current,
            client._backoff,
            client._max_backoff,
            retry_timeout,
        )
        self._timeout = _timeout(client._timeout, heartbeat)
        self._resp: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._pending: deque[WatchEvent] = deque()
        self._closed = False
        self._started = False

    @property
    def last_revision(self) -> int:
        return self.state.last_revision

    @property
    def reconnects(self) -> int:
        return self.state.reconnects

    async def start(self) -> Self:
        if not self._started:
            self._started = True
            await self._connect()
        return self

    async def _drop(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()
        self._resp = None
        self._lines = None

    async def _connect(self) -> None:
        while not self._closed:
            ep = self._client.endpoints[self._dialer.ep]
            why = ""
            try:
                req = self._client._http.build_request(
                    "GET",
                    ep + WATCH_PATH,
                    params=self.state.params(self._heartbeat),
                    timeout=self._timeout,
                )
                resp = await self._client._http.send(req, stream=True)
                if resp.status_code != 200:
                    await resp.aread()
                    await resp.aclose()
                    err = _refusal(resp)
                    if err is not None:
                        raise err
                    why = f"{ep}: HTTP {resp.status_code}"
                else:
                    self._resp = resp
                    self._lines = resp.aiter_lines()
                    self.state.new_stream()
                    while not self.state.created:
                        line = await anext(self._lines)
                        self._pending.extend(self.state.on_line(line))
                    self._dialer.connected()
                    return
            except (httpx.TransportError, StopAsyncIteration, _Reconnect) as exc:
                why = f"{ep}: {type(exc).__name__}: {exc}"
                await self._drop()
            pause = self._dialer.failed(time.monotonic(), why)
            if pause:
                await asyncio.sleep(pause)

    async def _read(self) -> None:
        if self._lines is None:  # dropped after a timed-out read
            await self._connect()
            return
        try:
            self._pending.extend(self.state.on_line(await anext(self._lines)))
            return
        except (httpx.TransportError, StopAsyncIteration, _Reconnect) as exc:
            if self._closed:
                return
            why = f"{type(exc).__name__}: {exc}"
        await self._drop()
        self.state.reconnects += 1
        pause = self._dialer.failed(time.monotonic(), why)
        if pause:
            await asyncio.sleep(pause)
        await self._connect()

    async def get(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event; None after `timeout` seconds without one, or once closed."""
        await self.start()
        try:
            async with asyncio.timeout(timeout):
                while not self._pending:
                    if self._closed:
                        return None
                    await self._read()
        except TimeoutError:
            if self._pending:
                return self._pending.popleft()
            # The read was cut mid-line: this stream cannot be trusted to resume at a
            # line boundary, so the next read makes a new one from next_revision.
            await self._drop()
            return None
        except BaseException:
            await self.aclose()
            raise
        return self._pending.popleft()

    def __aiter__(self) -> AsyncIterator[WatchEvent]:
        return self

    async def __anext__(self) -> WatchEvent:
        ev = await self.get()
        if ev is None:
            raise StopAsyncIteration
        return ev

    async def aclose(self) -> None:
        self._closed = True
        await self._drop()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["AsyncWatch", "Watch", "WatchCanceled", "WatchEvent", "WatchSpec", "WatchState"]
