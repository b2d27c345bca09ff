"""The body of a PUT, read straight from ASGI, and the answer to an upload that is
refused before its body was read.

A client that sends its whole body without waiting for `100 Continue` (urllib,
requests) only reads the answer once it has sent everything. If the member answered
and closed the connection with the body still arriving, the kernel would reset the
connection and the client would see ECONNRESET instead of the answer. So a refused
upload is answered first, then what is left of the body is read and dropped, up to a
bound in bytes and in time, and only then is the answer finished (and the connection
closed, if the client asked for that): servers that linger on close do the same.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from ..server import errors as E
from .responses import error_response

DRAIN_MIN_BYTES = 16 << 20
"""Read and drop at least this much of a refused body (or twice the value limit)."""
DRAIN_TIMEOUT = 10.0
"""Seconds to spend reading and dropping a refused body."""


class Upload:
    """Reads the request body from `receive`, and knows whether it was read to the end."""

    __slots__ = ("done", "receive", "started")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.started = False
        self.done = False

    async def read(self, limit: int) -> bytes:
        """The whole body; `TooLarge` as soon as it exceeds `limit` bytes."""
        self.started = True
        chunks: list[bytes] = []
        size = 0
        while not self.done:
            message = await self.receive()
            if message["type"] != "http.request":
                raise ClientDisconnect()
            body: bytes = message.get("body", b"")
            self.done = not message.get("more_body", False)
            size += len(body)
            if size > limit:
                raise E.TooLarge(
                    f"value exceeds the limit of {limit} bytes", code="value_too_large"
                )
            if body:
                chunks.append(body)
        return b"".join(chunks)

    async def discard(self, limit: int, timeout: float) -> None:
        """Read and drop the rest of the body: at most `limit` bytes, `timeout` seconds."""
        self.started = True
        size = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self.done and size <= limit:
                    message = await self.receive()
                    if message["type"] != "http.request":
                        return
                    size += len(message.get("body", b""))
                    self.done = not message.get("more_body", False)


class LingeringResponse(Response):
    """`response`, sent before the rest of the request body is read and dropped; the
    answer is finished once the body is drained (or the bound is reached)."""

    def __init__(self, response: Response, upload: Upload, limit: int, timeout: float) -> None:
        super().__init__(response.body, response.status_code)
        self.raw_headers = response.raw_headers
        self.upload = upload
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        await self.upload.discard(self.limit, self.timeout)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def refuse_upload(
    err: E.ApiError, upload: Upload, expects_continue: bool, drain_limit: int
) -> Response:
    """The answer to a PUT refused before its body was read to the end. A client that
    waits for `100 Continue` and was not told to go on has sent no body: answer now."""
    response = error_response(err)
    if upload.done or (expects_continue and not upload.started):
        return response
    return LingeringResponse(response, upload, drain_limit, DRAIN_TIMEOUT)
