"""`POST /v3/watch` on the JSON gateway: etcd's bidirectional Watch stream over one
HTTP request, as grpc-gateway (which etcd's gateway is) serves it.

The request body is a stream of JSON `WatchRequest`s (create, cancel, progress),
one after another (newline-separated by convention; any whitespace will do), read as
they arrive; the response is a chunked stream of `{"result": WatchResponse}` objects,
one per line, for as long as the client keeps the connection. The end of the body is
a half-close: the watches go on sending (etcd's behaviour, which `curl -d` relies on).

grpc-gateway's edges, checked against a real etcd (`tests/etcdapi/test_gateway_watch.py`):
- the first request is decoded before anything is answered: if it is not JSON, the
  answer is `500 {"error", "code": 2, "message"}` (grpc-gateway returns the decoder's
  error as UNKNOWN; a truncated one says `unexpected EOF`, as Go's decoder);
- a later request that is not JSON ends the reading (a half-close), not the stream;
- unknown fields are ignored, and a request with none of create/cancel/progress does
  nothing;
- an error of the stream itself (the member stops knowing a leader under
  `Grpc-Metadata-Hasleader: true`, ...) is sent as a last line,
  `{"error": {"grpc_code", "http_code", "message", "http_status"}}`.

The responses come from the gRPC servicer itself (`WatchService.watch`), fed with the
decoded requests, so the two cannot drift.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import orjson
from google.protobuf import json_format
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..server import errors as E
from . import errors as X
from .proto import rpc_pb2 as pb
from .services import EtcdServices

_HEADERS = [
    (b"content-type", b"application/json"),
    (b"grpc-metadata-content-type", b"application/grpc"),
]


class DecodeError(ValueError):
    """A request of the body is not a JSON WatchRequest."""


class JsonStream:
    """JSON values from a body that arrives in chunks: `feed` returns the values
    completed so far. A value still open waits for more data; at the end of the body
    (`final`) it is an error. `limit` bounds the text held for one value."""

    def __init__(self, limit: int) -> None:
        self._text = ""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._json = json.JSONDecoder()
        self._limit = limit

    def feed(self, data: bytes, *, final: bool) -> list[Any]:
        try:
            self._text += self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            raise DecodeError(f"request is not UTF-8: {exc}") from None
        out: list[Any] = []
        while True:
            text = self._text.lstrip()
            if not text:
                self._text = ""
                return out
            try:
                obj, end = self._json.raw_decode(text)
            except json.JSONDecodeError as exc:
                self._text = text
                if len(text) > self._limit:
                    raise DecodeError(X.REQUEST_TOO_LARGE.message) from None
                if final:
                    raise DecodeError(_decode_message(exc, text)) from None
                return out
            out.append(obj)
            self._text = text[end:]


def _decode_message(exc: json.JSONDecodeError, text: str) -> str:
    if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated"):
        return "unexpected EOF"  # what Go's decoder says of a value cut short
    return f"{exc.msg} at offset {exc.pos}"


def watch_request(obj: Any) -> pb.WatchRequest:
    """A decoded JSON value as a WatchRequest (proto3 JSON: either field-name style,
    bytes in base64); unknown fields are ignored, as grpc-gateway's decoder does."""
    if not isinstance(obj, dict):
        raise DecodeError("a watch request must be a JSON object")
    req = pb.WatchRequest()
    try:
        json_format.ParseDict(obj, req, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise DecodeError(str(exc)) from None
    return req


def result_line(resp: pb.WatchResponse) -> bytes:
    """`{"result": ...}` and a newline: grpc-gateway's framing of a stream message,
    in etcd's gateway shape (original field names, int64 as strings, defaults left
    out)."""
    body = orjson.dumps(json_format.MessageToDict(resp, preserving_proto_field_name=True))
    return b'{"result":' + body + b"}\n"


def error_line(err: X.EtcdError) -> bytes:
    """grpc-gateway v1's stream error (`internal.StreamError`)."""
    from .gateway import HTTP_STATUS

    http = HTTP_STATUS.get(err.code, 500)
    return (
        orjson.dumps(
            {
                "error": {
                    "grpc_code": err.code.value[0],
                    "http_code": http,
                    "message": err.message,
                    "http_status": HTTPStatus(http).phrase,
                }
            }
        )
        + b"\n"
    )


class _Metadata:
    """The gRPC call context the servicer reads (`requires_leader`): grpc-gateway
    turns `Grpc-Metadata-<Name>` headers into the call's metadata."""

    def __init__(self, scope: Scope) -> None:
        prefix = b"grpc-metadata-"
        self._md = tuple(
            (k[len(prefix) :].decode("latin-1").lower(), v.decode("latin-1"))
            for k, v in scope.get("headers", ())
            if k.lower().startswith(prefix)
        )

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._md


class WatchStreamResponse(Response):
    """The whole exchange as one ASGI response: it reads the request body itself
    while it streams, since the body is the request stream (a StreamingResponse
    would swallow it while listening for the disconnect)."""

    def __init__(self, services: EtcdServices, limit: int) -> None:
        super().__init__(status_code=200)
        self.services = services
        self.parser = JsonStream(limit)
        self.queue: asyncio.Queue[pb.WatchRequest | None] = asyncio.Queue()
        """Decoded requests for the servicer; None is the half-close."""
        self.disconnected = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reading = await self._first_request(receive, send)
        if reading is None:
            return
        reader = asyncio.create_task(self._read_body(receive, reading))
        writer = asyncio.create_task(self._write(scope, send))
        gone = asyncio.create_task(self.disconnected.wait())
        try:
            await asyncio.wait([writer, gone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (writer, reader, gone):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError, Exception):
                    await t

    async def _first_request(self, receive: Receive, send: Send) -> bool | None:
        """Read until the first request is decoded (queued) or the body ends: whether
        the body goes on; None when it is all answered (an error, a disconnect)."""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            final = not msg.get("more_body", False)
            try:
                got = [
                    watch_request(o) for o in self.parser.feed(msg.get("body", b""), final=final)
                ]
            except DecodeError as exc:
                body = orjson.dumps({"error": str(exc), "code": 2, "message": str(exc)})
                await send({"type": "http.response.start", "status": 500, "headers": _HEADERS[:1]})
                await send({"type": "http.response.body", "body": body})
                return None
            for r in got:
                self.queue.put_nowait(r)
            if final:
                self.queue.put_nowait(None)
                return False
            if got:
                return True

    async def _read_body(self, receive: Receive, reading: bool) -> None:
        """The rest of the body, request by request, then the disconnect."""
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                self.disconnected.set()
                return
            if not reading:
                continue
            final = not msg.get("more_body", False)
            try:
                for obj in self.parser.feed(msg.get("body", b""), final=final):
                    self.queue.put_nowait(watch_request(obj))
            except DecodeError:
                final = True  # grpc-gateway stops sending: a half-close
            if final:
                reading = False
                self.queue.put_nowait(None)

    async def _requests(self) -> AsyncIterator[pb.WatchRequest]:
        while (r := await self.queue.get()) is not None:
            yield r

    async def _write(self, scope: Scope, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        line = b""
        try:
            async for resp in self.services.watch(self._requests(), _Metadata(scope)):
                await send(
                    {"type": "http.response.body", "body": result_line(resp), "more_body": True}
                )
        except X.EtcdError as exc:
            line = error_line(exc)
        except E.ApiError as exc:
            line = error_line(X.from_api_error(exc))
        await send({"type": "http.response.body", "body": line, "more_body": False})
